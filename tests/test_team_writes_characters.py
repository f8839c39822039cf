"""Issue 16, character side: every write checks the role in core/ and leaves exactly one audit row.

Real Postgres, real files, a real procrastinate worker: a refused write changes no row, queues no job,
writes no file, makes no AI call and leaves no audit row; a permitted one leaves one row whose
before → after says what changed.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from core import characters, generation, media, references, tags
from core.ai import ai_functions
from core.characters import CharacterInput
from core.errors import PermissionDenied
from core.vectors import embedding_requests, embeddings, projection
from core.vectors.projection import ProjectionParams
from db.engine import session_scope
from db.models_team import AuditEvent, Member
from tests.helpers import image_bytes
from tests.test_generation import run_worker
from tests.test_references import http_server  # noqa: F401 (fixture)

VIEWER, REVIEWER, EDITOR = "viewer@team.test", "reviewer@team.test", "editor@team.test"
FAST = ProjectionParams(n_neighbors=5, min_dist=0.1, metric="cosine", n_epochs=30, random_state=7)
TABLES = ("character", "reference_image", "generation_run", "variation", "procrastinate_jobs", "ai_call",
          "audit_event", "projection", "embedding", "subject_tag", "tag_concept")


@pytest.fixture(autouse=True)
def members():
    with session_scope() as s:
        s.add_all([Member(identity=VIEWER, role="viewer"), Member(identity=REVIEWER, role="reviewer"),
                   Member(identity=EDITOR, role="editor")])


@pytest.fixture
def cast(editor):
    """Two characters (one with a reference image) and a queued run, made by the local admin."""
    a = characters.create_character(data=CharacterInput(name="Kira Voss", description="netrunner",
                                                        traits=["cyber arm"]), editor=editor)
    b = characters.create_character(data=CharacterInput(name="Ayla Storm", traits=["storm mage"]), editor=editor)
    ref = references.add_reference_upload(character_id=a.id, data=image_bytes(), filename="front.png",
                                          claimed_mime=None, editor=editor, caption="front view")
    run = generation.request_run(character_id=b.id, requested_by=editor)
    return a, b, ref, run


def _state() -> dict:
    """Row counts of everything a write could touch, plus the media files on disk."""
    with session_scope() as s:
        counts = {t: s.execute(sa.text(f'select count(*) from "{t}"')).scalar_one() for t in TABLES}
        counts["character_rows"] = s.execute(sa.text(
            "select array_agg(row(id, name, description, archived, version)::text order by id) from character")
        ).scalar_one()
        counts["reference_rows"] = s.execute(sa.text(
            "select array_agg(row(id, caption, alt_text, version)::text order by id) from reference_image")
        ).scalar_one()
        counts["variation_states"] = s.execute(sa.text(
            "select array_agg(row(id, status)::text order by id) from variation")).scalar_one()
    counts["files"] = sorted(str(p) for p in media.media_root().rglob("*") if p.is_file())
    return counts


def _new_rows(since: int) -> list[AuditEvent]:
    with session_scope() as s:
        return list(s.execute(sa.select(AuditEvent).where(AuditEvent.id > since).order_by(AuditEvent.id))
                    .scalars().all())


def _last_id() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0))).scalar_one()


# ---------------------------------------------------------------- refusals
REFUSALS = {
    # name: (who, role needed, call(cast, who))
    "create": (VIEWER, "editor", lambda c, w: characters.create_character(data=CharacterInput(name="New"), editor=w)),
    "edit": (REVIEWER, "editor", lambda c, w: characters.update_character(
        character_id=c[0].id, expected_version=1, data=CharacterInput(name="Kira Voss", description="x"), editor=w)),
    "archive": (REVIEWER, "editor", lambda c, w: characters.set_archived(
        character_id=c[0].id, expected_version=1, archived=True, editor=w)),
    "upload": (VIEWER, "editor", lambda c, w: references.add_reference_upload(
        character_id=c[0].id, data=image_bytes(colour="#aa0000"), filename="x.png", claimed_mime=None, editor=w)),
    "url": (VIEWER, "editor", lambda c, w: references.add_reference_url(
        character_id=c[0].id, url="http://127.0.0.1:9/never-fetched.png", editor=w)),
    "caption edit": (REVIEWER, "editor", lambda c, w: references.update_reference_text(
        reference_id=c[2].id, expected_version=c[2].version, caption="new", alt_text="", editor=w)),
    "reference delete": (REVIEWER, "editor", lambda c, w: references.delete_reference(reference_id=c[2].id,
                                                                                      editor=w)),
    "generate": (VIEWER, "editor", lambda c, w: generation.request_run(character_id=c[0].id, requested_by=w)),
    "generate many": (REVIEWER, "editor", lambda c, w: generation.request_runs(character_ids=[c[0].id],
                                                                               requested_by=w)),
    "regenerate": (VIEWER, "editor", lambda c, w: generation.regenerate(run_id=c[3].run_id, requested_by=w,
                                                                        slot_keys=["portrait_front"])),
    "cancel": (REVIEWER, "editor", lambda c, w: generation.cancel_run(run_id=c[3].run_id, requested_by=w)),
    "suggest names": (VIEWER, "editor", lambda c, w: ai_functions.suggest_names(
        description="a knight", traits=[], style_id=None, requested_by=w)),
    "caption ai": (REVIEWER, "editor", lambda c, w: ai_functions.caption_reference(reference_id=c[2].id,
                                                                                   requested_by=w)),
    "caption image": (VIEWER, "editor", lambda c, w: ai_functions.caption_image(
        subject_type="reference", subject_id=c[2].id, requested_by=w)),
    "try slot": (VIEWER, "editor", lambda c, w: ai_functions.try_slot(character_id=c[0].id,
                                                                      slot_key="portrait_front", requested_by=w)),
    "tag": (REVIEWER, "editor", lambda c, w: tags.apply_tag(subject_type="character", subject_ids=[c[0].id],
                                                            tag_name="hero", editor=w)),
    "new tag by editor": (EDITOR, "admin", lambda c, w: tags.apply_tag(
        subject_type="character", subject_ids=[c[0].id], tag_name="brand new", editor=w)),
    "map": (VIEWER, "editor", lambda c, w: projection.request_fit(space="text-local", subject_type="character",
                                                                 params=FAST, editor=w)),
    "embed": (REVIEWER, "editor", lambda c, w: embedding_requests.request_embed(
        subject_type="character", ids=[c[0].id], spaces=None, editor=w, what="re-embed stale")),
    "backfill": (VIEWER, "editor", lambda c, w: embedding_requests.request_backfill(editor=w)),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_a_role_below_the_write_is_refused_with_the_role_named_and_nothing_changes(name, cast):
    who, needed, call = REFUSALS[name]
    if name == "tag":  # the tag exists, so only applying it is at stake
        tags.create_tag(name="hero", editor="Tess Tester", embed=False)
    held = {VIEWER: "viewer", REVIEWER: "reviewer", EDITOR: "editor"}[who]
    before = _state()
    with pytest.raises(PermissionDenied, match=f"needs the {needed} role; you are an? {held}"):
        call(cast, who)
    assert _state() == before  # no row, no job, no file, no ai_call, no audit row


def test_a_refused_generate_makes_no_provider_call_and_queues_nothing(cast):
    a = cast[0]
    with pytest.raises(PermissionDenied):
        generation.request_runs(character_ids=[a.id, cast[1].id], requested_by=VIEWER)
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from generation_run where character_id = :c"),
                         {"c": a.id}).scalar_one() == 0
        assert s.execute(sa.text("select count(*) from ai_call")).scalar_one() == 0


# ---------------------------------------------------------------- one row per permitted write
def _one(since: int) -> AuditEvent:
    rows = _new_rows(since)
    assert len(rows) == 1, [(r.action, r.entity, r.entity_id) for r in rows]
    assert rows[0].actor == EDITOR and rows[0].role == "editor"
    return rows[0]


def test_character_writes_leave_one_row_each_with_before_and_after():
    mark = _last_id()
    ch = characters.create_character(data=CharacterInput(name="Sable", description="assassin"), editor=EDITOR)
    row = _one(mark)
    assert (row.action, row.entity, row.entity_id, row.label) == ("character.create", "character", str(ch.id), "Sable")
    assert row.changes["name"] == [None, "Sable"] and row.changes["description"] == [None, "assassin"]

    mark = _last_id()
    ch = characters.update_character(character_id=ch.id, expected_version=ch.version, editor=EDITOR,
                                     data=CharacterInput(name="Sable", description="retired assassin"))
    row = _one(mark)
    assert row.action == "character.update"
    assert row.changes == {"description": ["assassin", "retired assassin"]}  # only what changed

    mark = _last_id()
    characters.set_archived(character_id=ch.id, expected_version=ch.version, archived=True, editor=EDITOR)
    row = _one(mark)
    assert (row.action, row.changes) == ("character.archive", {"archived": [False, True]})


def test_a_conflicting_edit_leaves_no_audit_row():
    ch = characters.create_character(data=CharacterInput(name="Sable"), editor=EDITOR)
    characters.update_character(character_id=ch.id, expected_version=1, data=CharacterInput(name="Sable", notes="a"),
                                editor=EDITOR)
    mark = _last_id()
    with pytest.raises(Exception, match="Nothing was overwritten"):
        characters.update_character(character_id=ch.id, expected_version=1,
                                    data=CharacterInput(name="Sable", notes="b"), editor=EDITOR)
    assert _new_rows(mark) == []


def test_reference_writes_leave_one_row_each_and_a_delete_keeps_what_was_deleted(http_server, settings_override):
    base, routes = http_server
    ch = characters.create_character(data=CharacterInput(name="Ayla"), editor=EDITOR)
    mark = _last_id()
    ref = references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="front.png",
                                          claimed_mime=None, editor=EDITOR, caption="front")
    row = _one(mark)
    assert (row.action, row.entity, row.entity_id) == ("reference.add", "reference", str(ref.id))
    assert row.changes["original_filename"] == [None, "front.png"] and row.changes["character_id"] == [None, ch.id]

    settings_override(allow_private_urls=True)
    routes["/side.png"] = ("image/png", image_bytes(colour="#00aa00"))
    mark = _last_id()
    by_url = references.add_reference_url(character_id=ch.id, url=f"{base}/side.png", editor=EDITOR)
    row = _one(mark)
    assert row.action == "reference.add" and row.changes["source"] == [None, "url"]

    mark = _last_id()
    ref = references.update_reference_text(reference_id=ref.id, expected_version=ref.version, caption="front, smiling",
                                           alt_text="Ayla from the front", editor=EDITOR)
    row = _one(mark)
    assert row.changes == {"caption": ["front", "front, smiling"], "alt_text": ["", "Ayla from the front"]}

    mark = _last_id()
    references.delete_reference(reference_id=by_url.id, editor=EDITOR)
    row = _one(mark)
    assert (row.action, row.entity_id) == ("reference.delete", str(by_url.id))
    assert row.changes["character_id"] == [ch.id, None] and row.changes["source_url"][1] is None
    assert row.changes["source_url"][0].endswith("/side.png") and "side" in row.label


def test_generation_writes_leave_one_row_per_run_and_none_for_a_run_handed_back(editor):
    a, b, gone = (characters.create_character(data=CharacterInput(name=n), editor=editor) for n in ("A1", "B2", "C3"))
    characters.set_archived(character_id=gone.id, expected_version=1, archived=True, editor=editor)
    mark = _last_id()
    req = generation.request_run(character_id=a.id, requested_by=EDITOR)
    row = _one(mark)
    assert (row.action, row.entity, row.entity_id, row.label) == ("generation.request", "run", str(req.run_id), "A1")
    assert row.changes["character_id"] == [None, a.id] and row.changes["slots"] == [None, 10]

    mark = _last_id()
    results = generation.request_runs(character_ids=[a.id, b.id, gone.id], requested_by=EDITOR)
    rows = _new_rows(mark)  # a's active run handed back and the archived one refused: only b's run is a write
    assert [(r.action, r.entity_id) for r in rows] == [("generation.request", str(results[1].run_id))]
    assert not results[0].created and isinstance(results[2], Exception)

    mark = _last_id()
    assert generation.cancel_run(run_id=req.run_id, requested_by=EDITOR) == 10
    row = _one(mark)
    assert row.action == "generation.cancel" and len(row.changes["cancelled_slots"][1]) == 10
    assert row.changes["status"] == ["queued", "cancelled"]
    assert generation.cancel_run(run_id=req.run_id, requested_by=EDITOR) == 0 and _new_rows(row.id) == []

    mark = _last_id()
    new = generation.regenerate(run_id=req.run_id, requested_by=EDITOR, slot_keys=["portrait_front", "action_pose"])
    row = _one(mark)
    assert len(new) == 2 and row.action == "generation.regenerate"
    assert row.changes["regenerated"] == [None, ["portrait_front", "action_pose"]]


def test_ai_calls_a_person_starts_are_audited_and_the_workers_calls_need_no_person(cast):
    a = cast[0]
    mark = _last_id()
    out = ai_functions.suggest_names(description="a knight", traits=["brave"], style_id=None, requested_by=EDITOR)
    row = _one(mark)
    assert (row.action, row.entity, row.entity_id) == ("ai.call", "ai_call", str(out.call_id))
    assert row.changes["function"] == [None, "suggest_names"]
    mark = _last_id()
    out = ai_functions.try_slot(character_id=a.id, slot_key="portrait_front", requested_by=EDITOR)
    assert _one(mark).changes["subject_id"] == [None, a.id]

    # the editor who asked for the run is demoted before the worker gets to it: the run was authorized
    # when it was requested, so its ten provider calls go ahead (system path) and add no audit rows
    req = generation.request_run(character_id=a.id, requested_by=EDITOR)
    with session_scope() as s:
        s.execute(sa.update(Member).where(Member.identity == EDITOR).values(role="viewer"))
    mark = _last_id()
    run_worker()
    assert generation.run_status(run_id=req.run_id).counts == {"completed": 10}
    assert _new_rows(mark) == []
    # a caption the embedding job asks for is the system path too: no person, no role, no audit row
    ai_functions.caption_image_for_job(subject_type="reference", subject_id=cast[2].id, job_label="embedding job")
    assert _new_rows(mark) == []


def test_tagging_leaves_one_row_per_subject_and_a_new_tag_needs_an_admin(cast, editor):
    a, b = cast[0], cast[1]
    tags.create_tag(name="hero", editor=editor, embed=False)
    mark = _last_id()
    assert tags.apply_tag(subject_type="character", subject_ids=[a.id, b.id, a.id], tag_name="Hero", editor=EDITOR) == 2
    rows = _new_rows(mark)
    assert [(r.action, r.entity, r.entity_id) for r in rows] == [
        ("tag.apply", "character", str(a.id)), ("tag.apply", "character", str(b.id))]
    assert rows[0].changes == {"tag": [None, "hero"]}
    mark = _last_id()
    tags.apply_tag(subject_type="reference", subject_ids=[cast[2].id], tag_name="Brand New", editor=editor)
    assert [(r.action, r.entity) for r in _new_rows(mark)] == [("tag.create", "tag"), ("tag.apply", "reference")]


def test_map_and_embedding_requests_are_audited_once_and_a_duplicate_request_writes_nothing(cast):
    mark = _last_id()
    p = projection.request_fit(space="text-local", subject_type="character", params=FAST, editor=EDITOR)
    row = _one(mark)
    assert (row.action, row.entity, row.entity_id) == ("map.build", "projection", str(p.id)) and p.job_id
    assert projection.request_fit(space="text-local", subject_type="character", params=FAST, editor=EDITOR) is None
    assert _new_rows(row.id) == []
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from projection")).scalar_one() == 1

    ids = [cast[0].id, cast[1].id]
    mark = _last_id()
    assert embedding_requests.request_embed(subject_type="character", ids=ids, spaces=None, editor=EDITOR,
                                    what="re-embed stale") == 2
    row = _one(mark)
    assert (row.action, row.entity) == ("embedding.run", "embedding") and row.changes["ids"] == [None, ids]
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from embedding where status = 'queued' and subject_type = "
                                 "'character' and subject_id = any(:i)"), {"i": ids}).scalar_one() >= 2

    mark = _last_id()
    assert embedding_requests.request_backfill(editor=EDITOR) is True
    assert _one(mark).changes["request"] == [None, "backfill"]
    assert embedding_requests.request_backfill(editor=EDITOR) is False  # one already waits: nothing written
    assert len(_new_rows(mark)) == 1


# ---------------------------------------------------------------- pages
def _page(path: str, who: str, **params: str):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.session_state["editor_name"] = who
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(path)
    return at.run()


def test_pages_grey_out_what_the_role_cannot_do_and_core_refuses_a_crafted_click(cast):
    at = _page("pages/characters.py", VIEWER)
    assert not at.exception
    create = at.button(key="create_character")
    assert create.disabled and create.help == "Creating a character needs the editor role; you are a viewer."
    assert at.button(key="generate_shown").disabled

    # the page was drawn for an editor, who is made a viewer before clicking: the rerun draws the button
    # disabled, so the click is dropped (core would refuse it too: see the refusal tests above)
    at = _page("pages/characters.py", EDITOR)
    assert not at.button(key="create_character").disabled
    with session_scope() as s:
        s.execute(sa.update(Member).where(Member.identity == EDITOR).values(role="viewer"))
    before = _state()
    at.text_input(key="new_name").input("Sneaky")
    at.button(key="create_character").click().run()
    assert at.button(key="create_character").disabled and _state() == before
    with session_scope() as s:
        s.execute(sa.update(Member).where(Member.identity == EDITOR).values(role="editor"))

    at = _page("pages/characters.py", REVIEWER, character=str(cast[0].id))
    assert not at.exception
    save = next(b for b in at.button if b.label == "Save changes")
    assert save.disabled and "needs the editor role; you are a reviewer" in save.help
    assert at.button(key=f"generate_{cast[0].id}").disabled
    assert at.button(key=f"archive_{cast[0].id}").disabled

    at = _page("pages/characters.py", EDITOR, character=str(cast[0].id))
    assert not at.button(key=f"generate_{cast[0].id}").disabled
    assert not next(b for b in at.button if b.label == "Save changes").disabled
