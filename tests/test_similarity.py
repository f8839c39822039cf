"""Search modes, filters that keep k, tags, drift and the look-alike guard — on real pgvector and real files."""
import io

import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw

from core.vectors import embedding_status
from core import characters, generation, jobs, media, references, review, styles, tags
from core.vectors import embeddings, similarity
from core.characters import CharacterInput
from db.engine import session_scope
from tests.test_generation import run_worker


def picture(kind: str, *, shift: int = 0, size: int = 160) -> bytes:
    """Distinct, real images: a red disc, a blue square, green stripes, a yellow triangle."""
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    if kind == "red disc":
        d.ellipse((30 + shift, 30 + shift, 130 + shift, 130 + shift), fill="#d22")
    elif kind == "blue square":
        d.rectangle((25 + shift, 25, 135 + shift, 135), fill="#23c")
    elif kind == "green stripes":
        for x in range(0, size, 20):
            d.rectangle((x + shift, 0, x + shift + 9, size), fill="#2a3")
    elif kind == "yellow triangle":
        d.polygon([(80 + shift, 15), (150, 145), (10 + shift, 145)], fill="#ec2")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


KINDS = {"Ruby": ("red disc", "a glowing red lantern"), "Cobalt": ("blue square", "a blue steel shield"),
         "Fern": ("green stripes", "a field of tall green grass"), "Sunny": ("yellow triangle", "a golden pyramid")}


@pytest.fixture
def gallery(editor):
    """Four characters, each with one reference image and a caption; everything embedded."""
    out = {}
    for name, (kind, caption) in KINDS.items():
        ch = characters.create_character(data=CharacterInput(name=name), editor=editor)
        ref = references.add_reference_upload(character_id=ch.id, data=picture(kind), filename=f"{name}.png",
                                               claimed_mime="image/png", editor=editor, caption=caption)
        out[name] = (ch, ref)
    run_worker(queues=["embeddings"])  # the jobs queued by the saves and uploads
    return out


def test_uploads_are_embedded_by_their_jobs_in_text_and_image_space(gallery):
    rows = {(r["subject_type"], r["space"]): r for r in embedding_status.status_overview()}
    assert rows[("reference", "image-learned")]["current"] == 4
    assert rows[("reference", "text-local")]["current"] == 4
    assert rows[("character", "text-local")]["current"] == 4
    assert embeddings.backfill().model_calls == 0  # nothing changed: no model call anywhere


def test_image_search_by_upload_and_by_pick(gallery):
    res = similarity.search_image(data=picture("red disc", shift=8), k=4)
    assert res.hits[0].subject_id == gallery["Ruby"][1].id and res.hits[0].similarity > res.hits[1].similarity
    res = similarity.search_image(data=picture("green stripes", shift=5), k=1)
    assert res.hits[0].subject_id == gallery["Fern"][1].id
    picked = similarity.similar_to(subject_type="reference", subject_id=gallery["Cobalt"][1].id, k=3)
    assert gallery["Cobalt"][1].id not in [h.subject_id for h in picked.hits] and len(picked.hits) == 3
    with pytest.raises(Exception, match="not an image|cannot|Unsupported|format"):
        similarity.search_image(data=b"plain text, not a picture", k=3)


def test_text_finds_images_through_their_captions(gallery):
    res = similarity.search_text(query="lamp with a red glow", subject_types=("reference", "variation"), k=2)
    assert res.hits[0] == similarity.Hit("reference", gallery["Ruby"][1].id, res.hits[0].similarity)
    cards = similarity.hit_cards(res.hits)
    assert cards[0].title == "Ruby" and cards[0].thumb_path and media.exists(cards[0].thumb_path)


def test_filters_return_k_results_even_when_the_index_alone_would_not(editor, monkeypatch):
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    oil = styles.create_style(data=styles.StyleInput(name="Oil"), editor=editor)
    made = []
    for i in range(36):
        style = oil if i % 6 == 0 else ink  # 6 of 36 in Oil
        made.append(characters.create_character(
            data=CharacterInput(name=f"Guard {i}", traits=["city guard", f"post {i}"], style_id=style.id),
            editor=editor))
    embeddings.embed_characters()
    oil_ids = {c.id for c in made if c.style_id == oil.id}
    flt = similarity.SearchFilter(style_ids=(oil.id,))
    res = similarity.search_text(query="a city guard", k=5, flt=flt)
    assert len(res.hits) == 5 and {h.subject_id for h in res.hits} <= oil_ids and res.strategy == "exact"
    # force the index path with a tiny candidate list: whatever the index returns, k must come back
    monkeypatch.setattr(similarity, "EXACT_BELOW", 0)
    monkeypatch.setattr(similarity, "MAX_EF_SEARCH", 5)
    res = similarity.search_text(query="a city guard", k=6, flt=flt)
    assert len(res.hits) == 6 and {h.subject_id for h in res.hits} == oil_ids
    # archived characters drop out of results
    first = made[0]
    characters.set_archived(character_id=first.id, expected_version=first.version, archived=True, editor=editor)
    res = similarity.search_text(query="a city guard", k=6, flt=flt)
    assert first.id not in {h.subject_id for h in res.hits} and len(res.hits) == 5


def test_tags_are_assigned_filterable_and_applied_by_hand(editor):
    tags.create_tag(name="Animal", description="an animal character: a mouse, fox, cat or bird", editor=editor)
    tags.create_tag(name="technology", description="an android robot of chrome, a machine", editor=editor)
    pip = characters.create_character(data=CharacterInput(name="Pip", traits=["mouse knight", "needle sword"]),
                                      editor=editor)
    unit = characters.create_character(data=CharacterInput(name="Unit 7", traits=["android", "chrome plating"]),
                                       editor=editor)
    embeddings.backfill()
    assigned = tags.tags_for(subject_type="character", subject_ids=[pip.id, unit.id])
    assert assigned == {pip.id: ["animal"], unit.id: ["technology"]}
    animal = next(t for t in tags.list_tags() if t.name == "animal")
    res = similarity.search_text(query="someone", k=5, flt=similarity.SearchFilter(tag_ids=(animal.id,)))
    assert [h.subject_id for h in res.hits] == [pip.id]
    assert tags.apply_tag(subject_type="character", subject_ids=[unit.id], tag_name="Animal", editor=editor) == 1
    embeddings.backfill()  # automatic recomputation keeps the hand-applied tag
    assert "animal" in tags.tags_for(subject_type="character", subject_ids=[unit.id])[unit.id]
    with pytest.raises(Exception, match="already a tag"):
        tags.create_tag(name=" animal ", editor=editor)


def test_look_alike_warning_flags_near_twins_only(editor):
    a = characters.create_character(data=CharacterInput(
        name="Sable Nyx", traits=["assassin", "hooded", "silent", "obsidian daggers"],
        description="A silent assassin who strikes from the shadows."), editor=editor)
    far = characters.create_character(data=CharacterInput(
        name="Bram Copperkettle", traits=["tinker", "spectacles"], description="A cheerful village tinker."),
        editor=editor)
    run_worker(queues=["embeddings"])  # the cast is embedded by the jobs its saves queued
    assert similarity.look_alike(character_id=far.id) is None
    twin = characters.create_character(data=CharacterInput(
        name="Sable Nyxe", traits=["assassin", "hooded", "silent", "obsidian daggers"],
        description="A silent assassin who strikes from shadows."), editor=editor)
    warn = similarity.look_alike(character_id=twin.id)
    assert warn is not None and warn.character_id == a.id and warn.similarity >= similarity.DISTINCT_THRESHOLD


def test_drift_scores_variations_against_the_references_and_orders_the_queue(editor):
    ch = characters.create_character(data=CharacterInput(name="Ruby"), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=picture("red disc"), filename="r.png",
                                    claimed_mime="image/png", editor=editor)
    generation.request_run(character_id=ch.id, requested_by=editor)
    run_worker(queues=["generation"])
    with session_scope() as s:
        rows = s.execute(sa.text("select id, path, slot_key from variation order by id")).all()
    # two slots came back looking like the reference, one came back as something else entirely
    media.write_atomic(rows[0].path, picture("red disc", shift=6))
    media.write_atomic(rows[1].path, picture("red disc", shift=-4))
    media.write_atomic(rows[2].path, picture("green stripes"))
    run_worker(queues=["embeddings"])  # each finished slot queued its own embedding job
    with session_scope() as s:
        scores = dict(s.execute(sa.text("select id, drift_score from variation")).all())
    assert all(v is not None for v in scores.values())
    assert scores[rows[2].id] > max(scores[rows[0].id], scores[rows[1].id]) + 0.1
    by_drift = [i.variation_id for i in review.queue_slice(filters=review.ReviewFilter(), order="drift")]
    assert set(by_drift[-2:]) == {rows[0].id, rows[1].id}  # the two on-model images come last
    assert by_drift.index(rows[2].id) < by_drift.index(rows[0].id)
    assert "drift" in review.drift_label(scores[rows[2].id])


def test_unreadable_image_fails_alone_and_keeps_the_others(gallery):
    ruby_ref = gallery["Ruby"][1]
    path = media.resolve(ruby_ref.path)
    path.write_bytes(b"garbage")  # the file on disk is damaged after the upload
    with session_scope() as s:  # ... and its embedding has to be redone (e.g. after a model upgrade)
        s.execute(sa.text("update embedding set content_hash = 'old' where space = 'image-learned'"))
    rep = embeddings.embed_subjects(subject_type="reference", spaces=["image-learned"])
    assert (rep.embedded, rep.failed) == (3, 1)
    rows = {r["subject_id"]: r for r in embedding_status.status_rows(subject_type="reference", space="image-learned")}
    assert rows[ruby_ref.id]["status"] == "failed" and rows[ruby_ref.id]["has_vector"]  # old vector kept
    assert "cannot identify image" in rows[ruby_ref.id]["error"]
    assert {r["status"] for sid, r in rows.items() if sid != ruby_ref.id} == {"current"}


def test_a_save_queues_the_subject_and_one_embedding_job(editor):
    ch = characters.create_character(data=CharacterInput(name="Queued Quinn"), editor=editor)
    with session_scope() as s:
        names = s.execute(sa.text("select task_name from procrastinate_jobs")).scalars().all()
    assert names == [jobs.EMBED_PENDING]  # the subject waits in the pending set (its 'queued' row)
    assert [r["status"] for r in embedding_status.character_status()] == ["queued"]
    run_worker(queues=["embeddings"])
    assert [r["status"] for r in embedding_status.character_status()] == ["current"]
    assert similarity.search_text(query="Queued Quinn", k=1).hits[0].subject_id == ch.id


def test_with_openai_new_images_get_a_vision_caption_that_text_search_finds(editor, settings_override):
    import json

    from tests.openai_stub import chat_ok, start_stub

    stub, server = start_stub()
    try:
        settings_override(openai_api_key="sk-test", openai_base_url=stub.url, ai_provider="openai",
                          openai_max_retries=0)
        ch = characters.create_character(data=CharacterInput(name="Mara"), editor=editor)
        ref = references.add_reference_upload(character_id=ch.id, data=picture("blue square"), filename="m.png",
                                               claimed_mime="image/png", editor=editor)
        stub.script("/chat/completions", chat_ok(json.dumps(
            {"caption": "A lighthouse keeper holding a brass lantern on a stormy pier",
             "alt_text": "Keeper with lantern"})))
        run_worker(queues=["embeddings"])  # the upload's job: vision caption first, then the embeddings
        assert len(stub.calls("/chat/completions")) == 1
        assert "brass lantern" in embeddings.machine_captions(subject_type="reference")[ref.id]
        with session_scope() as s:
            row = s.execute(sa.text("select function, status, subject_id from ai_call")).one()
        assert tuple(row) == ("caption_reference", "succeeded", ref.id)
        assert "brass lantern" in embeddings.subjects(subject_type="reference", ids=[ref.id])[0].text
        res = similarity.search_text(query="lantern by the sea in a storm", subject_types=("reference",), k=1)
        assert res.hits[0].subject_id == ref.id and res.hits[0].similarity > 0.4  # it matches by what it shows
        assert references.list_references(character_id=ch.id)[0].caption == ""  # editor text untouched
        embeddings.embed_subjects(subject_type="reference", ids=[ref.id])  # captioned once, not again
        assert len(stub.calls("/chat/completions")) == 1
    finally:
        server.shutdown()
