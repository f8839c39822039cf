"""image-clip: a tiny, randomly initialised CLIP saved to a folder and loaded through the real code path (no
download), embedding uploads through the queue and text into the same 512-d space."""
import json

import numpy as np
import pytest
import sqlalchemy as sa

from core import characters, references
from core.vectors import embeddings, similarity
from core.characters import CharacterInput
from core.vectors.embedding_spaces import get_embedder
from core.errors import ValidationError
from core.vectors.image_embedders import IMAGE_CLIP, clip_available
from db.engine import session_scope
from tests.photos import photo, png
from tests.test_generation import run_worker


def tiny_clip(folder, *, projection_dim: int = 512):
    """A real CLIPModel + CLIPProcessor with a tiny config and random weights, saved like a downloaded model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    layers = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1, **layers),
                        vision_config=dict(image_size=32, patch_size=8, **layers), projection_dim=projection_dim)
    out = folder / "model"
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def test_without_a_model_image_clip_is_not_offered_and_says_how_to_enable_it():
    assert not clip_available()
    assert IMAGE_CLIP not in embeddings.spaces_for("reference")
    with pytest.raises(ValidationError, match="IMAGE_CLIP_MODEL"):
        get_embedder(IMAGE_CLIP)


def test_a_missing_folder_is_not_offered(settings_override, tmp_path):
    settings_override(image_clip_model=str(tmp_path / "nowhere"))
    assert not clip_available()


def test_tiny_clip_embeds_uploads_and_text_into_one_space(tmp_path, settings_override, editor):
    settings_override(image_clip_model=str(tiny_clip(tmp_path)))
    assert clip_available() and IMAGE_CLIP in embeddings.spaces_for("variation")
    ch = characters.create_character(data=CharacterInput(name="Whiskers"), editor=editor)
    refs = [references.add_reference_upload(character_id=ch.id, data=png(photo(f), side=128), filename=f"{i}.png",
                                            claimed_mime="image/png", editor=editor)
            for i, f in enumerate(("chelsea.png", "coffee.png", "astronaut.png"))]
    run_worker(queues=["embeddings"])  # the upload jobs embed in every image space, image-clip included
    with session_scope() as s:
        rows = s.execute(sa.text("select subject_id, model_id, vector_dims(vector), status from embedding "
                                 "where space = :s order by subject_id"), {"s": IMAGE_CLIP}).all()
    assert [(r[0], r[2], r[3]) for r in rows] == [(r.id, 512, "current") for r in refs]
    emb = get_embedder(IMAGE_CLIP)
    assert rows[0][1] == emb.model_id and emb.model_id.startswith("clip:model@")  # folder name + weights hash

    text = emb.embed_texts(["a cat on a sofa"])
    imgs = emb.embed([r.path for r in refs])  # the stored files, embedded again outside the queue
    assert text.shape == (1, 512) and imgs.shape == (3, 512)
    assert np.allclose(np.linalg.norm(np.vstack([text, imgs]), axis=1), 1.0, atol=1e-5)
    # describe → images searches the image vectors with the text vector: the ranking is the cosine ranking
    res = similarity.search_text(query="a cat on a sofa", subject_types=("reference",), k=3, space=IMAGE_CLIP)
    expected = [refs[i].id for i in np.argsort(-(imgs @ text[0]))]
    assert [h.subject_id for h in res.hits] == expected
    assert embeddings.backfill().model_calls == 0  # content hash: nothing to redo


def test_a_clip_model_of_another_size_is_refused_clearly(tmp_path, settings_override):
    settings_override(image_clip_model=str(tiny_clip(tmp_path, projection_dim=64)))
    with pytest.raises(ValidationError, match="gives 64-d embeddings"):
        get_embedder(IMAGE_CLIP).embed_texts(["anything"])


def test_text_search_in_an_image_space_without_a_text_side_is_refused():
    with pytest.raises(ValidationError, match="needs image-clip"):
        similarity.search_text(query="a cat", subject_types=("reference",), space="image-learned")
