"""The learned image space on real photographs, real Postgres and real worker jobs: search, drift, duplicates."""
import numpy as np
import pytest
import sqlalchemy as sa

from core.vectors import embedding_status
from core import characters, generation, media, references, review
from core.vectors import drift, duplicates, embeddings, similarity
from core.characters import CharacterInput
from core.vectors.embedding_spaces import IMAGE_LOCAL, get_embedder
from core.vectors.image_embedders import IMAGE_LEARNED
from db.engine import session_scope
from tests.photos import another_view, photo, png
from tests.test_generation import run_worker

PHOTOS = {"Whiskers": "chelsea.png", "Barista": "coffee.png", "Cosmo": "astronaut.png", "Apollo": "rocket.jpg"}


@pytest.fixture
def cast(editor):
    """Four characters, each with one real photograph as its reference, embedded by the jobs the uploads queued."""
    out = {}
    for name, file in PHOTOS.items():
        ch = characters.create_character(data=CharacterInput(name=name), editor=editor)
        out[name] = references.add_reference_upload(character_id=ch.id, data=png(photo(file), side=256),
                                                    filename=f"{name}.png", claimed_mime="image/png", editor=editor)
    run_worker(queues=["embeddings"])
    return out


def _run_with_pictures(character_id: int, editor: str, pictures: list) -> list:
    """A real offline ten-slot run through the worker; the first slots' files are then replaced by `pictures`
    (as if the provider had drawn them) before their queued embedding jobs run."""
    generation.request_run(character_id=character_id, requested_by=editor)
    run_worker(queues=["generation"])
    with session_scope() as s:
        rows = s.execute(sa.text("select id, path from variation where character_id = :c order by id"),
                         {"c": character_id}).all()
    for row, pic in zip(rows, pictures):
        media.write_atomic(row.path, png(pic, side=256))
    run_worker(queues=["embeddings"])
    return rows


def test_uploads_embed_in_the_learned_space_once_with_the_weights_in_the_model_id(cast):
    overview = {(r["subject_type"], r["space"]): r for r in embedding_status.status_overview()}
    assert overview[("reference", IMAGE_LEARNED)]["current"] == 4
    assert ("reference", IMAGE_LOCAL) not in overview  # the pixel descriptor is a fallback now, not the default
    with session_scope() as s:
        rows = s.execute(sa.text("select model_id, dims, vector_dims(vector) from embedding "
                                 "where space = :s"), {"s": IMAGE_LEARNED}).all()
    model_id = get_embedder(IMAGE_LEARNED).model_id
    assert {r[0] for r in rows} == {model_id} and model_id.startswith("efficientnet-lite0-imagenet@")
    assert {(r[1], r[2]) for r in rows} == {(1280, 1280)}
    assert embeddings.backfill().model_calls == 0  # unchanged content: the content hash says there is nothing to do


def test_a_changed_model_makes_vectors_stale_and_the_backfill_re_embeds_them(cast):
    with session_scope() as s:  # as after a weights upgrade: stored hashes no longer match
        s.execute(sa.text("update embedding set content_hash = 'older-weights' where space = :s"), {"s": IMAGE_LEARNED})
    stale = [r for r in embedding_status.status_rows(subject_type="reference", space=IMAGE_LEARNED) if r["status"] == "stale"]
    assert len(stale) == 4
    rep = embeddings.backfill()
    assert rep.embedded == 4 and rep.model_calls == 1  # one batch
    assert {r["status"] for r in embedding_status.status_rows(subject_type="reference", space=IMAGE_LEARNED)} == {"current"}


def test_another_view_of_a_photo_finds_its_original_first(cast):
    for name, file in PHOTOS.items():
        res = similarity.search_image(data=png(another_view(photo(file)), side=300), k=4)
        assert res.hits[0].subject_id == cast[name].id, name
        assert res.hits[0].similarity > res.hits[1].similarity
    picked = similarity.similar_to(subject_type="reference", subject_id=cast["Whiskers"].id, k=3)
    assert cast["Whiskers"].id not in [h.subject_id for h in picked.hits] and len(picked.hits) == 3


def test_the_learned_space_sees_through_a_view_change_the_pixel_descriptor_misses():
    emb, pix = get_embedder(IMAGE_LEARNED), get_embedder(IMAGE_LOCAL)
    originals = [photo(f) for f in PHOTOS.values()]
    views = [another_view(p) for p in originals]

    def margin(e) -> float:  # own-original similarity minus the best other original's, averaged
        sims = e.embed_images(views) @ e.embed_images(originals).T
        return float(np.mean([sims[i, i] - np.delete(sims[i], i).max() for i in range(len(views))]))

    assert margin(emb) > 0.2 and margin(emb) > margin(pix)


def test_drift_is_measured_in_the_learned_space_and_flags_off_model_images(editor):
    ch = characters.create_character(data=CharacterInput(name="Whiskers"), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=png(photo("chelsea.png"), side=256), filename="c.png",
                                    claimed_mime="image/png", editor=editor)
    cat = photo("chelsea.png")
    rows = _run_with_pictures(ch.id, editor, [another_view(cat), cat.rotate(8), photo("coffee.png")])
    with session_scope() as s:
        scores = dict(s.execute(sa.text("select id, drift_score from variation")).all())
    assert all(v is not None for v in scores.values())
    on_model, off_model = [scores[rows[0].id], scores[rows[1].id]], scores[rows[2].id]
    assert off_model > max(on_model) + 0.2
    assert not any(drift.is_off_model(x) for x in on_model) and drift.is_off_model(off_model)
    flagged = [q.variation_id for q in review.queue_slice(filters=review.ReviewFilter(), order="drift",
                                                          off_model_only=True)]
    assert rows[2].id in flagged and rows[0].id not in flagged and rows[1].id not in flagged
    assert "off-model" in review.drift_label(off_model) and "off-model" not in review.drift_label(on_model[0])

    from tests.test_pages import _page  # the review page: "Only off-model" filters the queue

    at = _page("pages/review.py")
    at.segmented_control(key="rv_view").set_value("queue").run()
    at.toggle(key="queue_off_model").set_value(True).run()
    assert not at.exception
    assert any(c.value.startswith(f"1 of {len(flagged)} ") for c in at.caption)
    assert any("off-model" in m.value for m in at.markdown)


def test_drift_threshold_can_be_set_by_the_operator(settings_override):
    assert drift.off_model_threshold() == drift.OFF_MODEL_DRIFT[IMAGE_LEARNED]
    settings_override(off_model_drift=0.05)
    assert drift.is_off_model(0.06) and not drift.is_off_model(0.05)


def test_duplicates_lists_near_identical_pairs_within_a_run_first_and_resolves_them(editor):
    a = characters.create_character(data=CharacterInput(name="Whiskers"), editor=editor)
    ref = references.add_reference_upload(character_id=a.id, data=png(photo("coffee.png"), side=240),
                                          filename="c.png", claimed_mime="image/png", editor=editor)
    cat = photo("chelsea.png")
    rows = _run_with_pictures(a.id, editor, [cat, cat.resize((400, 300)).resize((256, 256)), photo("coffee.png")])
    pairs = duplicates.find_pairs(threshold=0.9)
    keys = [{(p.a.subject_type, p.a.subject_id), (p.b.subject_type, p.b.subject_id)} for p in pairs]
    twins = {("variation", rows[0].id), ("variation", rows[1].id)}
    cross = {("reference", ref.id), ("variation", rows[2].id)}
    assert twins in keys and cross in keys
    assert keys.index(twins) < keys.index(cross)  # a pair within one run comes before a reference pair
    twin = pairs[keys.index(twins)]
    assert twin.same_run and twin.similarity > 0.95 and twin.a.thumb and twin.b.thumb
    assert {("variation", rows[0].id), ("variation", rows[2].id)} not in keys  # cat vs coffee: not a pair

    duplicates.keep_both(a=("reference", ref.id), b=("variation", rows[2].id), editor=editor)
    keys = [{(p.a.subject_type, p.a.subject_id), (p.b.subject_type, p.b.subject_id)}
            for p in duplicates.find_pairs(threshold=0.9)]
    assert cross not in keys and twins in keys

    from tests.test_pages import _page  # the Duplicates page: the same-run pair is on top; reject its right side

    at = _page("pages/duplicates.py")
    at.slider(key="dup_threshold").set_value(0.9).run()
    assert not at.exception and any("pair(s)" in m.value for m in at.markdown)
    twin = duplicates.find_pairs(threshold=0.9)[0]
    assert twin.same_run and {twin.a.subject_id, twin.b.subject_id} == {rows[0].id, rows[1].id}
    rejected_id = twin.b.subject_id
    next(b for b in at.button if b.key and b.key.startswith("dup_rej_right_")).click().run()
    assert not at.exception
    v = review.get_variation(variation_id=rejected_id)
    assert v.review_status == "rejected" and v.reason_codes == ["duplicate"]
    assert twins not in [{(p.a.subject_type, p.a.subject_id), (p.b.subject_type, p.b.subject_id)}
                         for p in duplicates.find_pairs(threshold=0.9)]


def test_duplicate_threshold_and_pair_input_are_checked(editor):
    with pytest.raises(Exception, match="between 0 and 1"):
        duplicates.find_pairs(threshold=1.5)
    with pytest.raises(Exception, match="two different images"):
        duplicates.keep_both(a=("variation", 1), b=("variation", 1), editor=editor)
    assert duplicates.find_pairs() == []  # nothing embedded yet: no pairs, no error


def test_an_existing_install_re_embeds_its_images_in_the_background_when_a_worker_starts(editor, settings_override):
    settings_override(embedding_image_space="image-local")  # an install from before image-learned
    ch = characters.create_character(data=CharacterInput(name="Whiskers"), editor=editor)
    for file in ("chelsea.png", "coffee.png"):
        references.add_reference_upload(character_id=ch.id, data=png(photo(file), side=200), filename=f"{file}",
                                        claimed_mime="image/png", editor=editor)
    run_worker(queues=["embeddings"])
    settings_override(embedding_image_space=IMAGE_LEARNED)  # the upgrade
    assert embeddings.images_behind() == 2
    assert embeddings.queue_backfill_if_images_behind() is not None  # what `workbench.py worker` does at start
    assert embeddings.queue_backfill_if_images_behind() is None  # one backfill at a time
    run_worker(queues=["embeddings"])
    assert embeddings.images_behind() == 0
    assert {r["status"] for r in embedding_status.status_rows(subject_type="reference", space=IMAGE_LEARNED)} == {"current"}
    assert embeddings.queue_backfill_if_images_behind() is None
