"""A character's history: its own audit rows and those of its references (deleted ones too), runs and
variations, newest first, paged in SQL and fast at 1,000 characters / 100k audit rows; and the tab."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from core import characters, generation, references, tags
from core.characters import CharacterInput
from core.team import audit_view, history
from db.engine import session_scope
from tests.helpers import image_bytes

ROOT = Path(__file__).resolve().parent.parent


def _story(editor: str):
    """Character A: created, edited, archived and restored, two references (one deleted, one captioned),
    a run requested and cancelled, a tag; character B: created and edited (must not show in A's history)."""
    a = characters.create_character(data=CharacterInput(name="Kira Voss", description="netrunner"), editor=editor)
    b = characters.create_character(data=CharacterInput(name="Ayla Storm"), editor=editor)
    a = characters.update_character(character_id=a.id, expected_version=a.version, editor="Ann",
                                    data=CharacterInput(name="Kira Voss", description="retired netrunner"))
    characters.update_character(character_id=b.id, expected_version=b.version, editor=editor,
                                data=CharacterInput(name="Ayla Storm", description="storm mage"))
    a = characters.set_archived(character_id=a.id, expected_version=a.version, archived=True, editor=editor)
    a = characters.set_archived(character_id=a.id, expected_version=a.version, archived=False, editor=editor)
    keep = references.add_reference_upload(character_id=a.id, data=image_bytes(), filename="front.png",
                                           claimed_mime=None, editor=editor)
    gone = references.add_reference_upload(character_id=a.id, data=image_bytes(colour="#aa0000"),
                                           filename="side.png", claimed_mime=None, editor=editor)
    references.add_reference_upload(character_id=b.id, data=image_bytes(), filename="b.png", claimed_mime=None,
                                    editor=editor)
    references.update_reference_text(reference_id=keep.id, expected_version=keep.version, caption="from the front",
                                     alt_text="", editor=editor)
    references.delete_reference(reference_id=gone.id, editor=editor)
    run = generation.request_run(character_id=a.id, requested_by=editor)
    generation.request_run(character_id=b.id, requested_by=editor)
    generation.cancel_run(run_id=run.run_id, requested_by=editor)
    tags.apply_tag(subject_type="character", subject_ids=[a.id, b.id], tag_name="hero", editor=editor)
    return a, b, keep, gone, run


def test_history_is_the_characters_own_trail_newest_first_including_deleted_references(editor):
    a, b, keep, gone, run = _story(editor)
    entries = history.character_history(character_id=a.id, limit=100)
    assert [(e.action, e.entity, e.entity_id) for e in entries] == [
        ("tag.apply", "character", str(a.id)),
        ("generation.cancel", "run", str(run.run_id)),
        ("generation.request", "run", str(run.run_id)),
        ("reference.delete", "reference", str(gone.id)),
        ("reference.update", "reference", str(keep.id)),
        ("reference.add", "reference", str(gone.id)),
        ("reference.add", "reference", str(keep.id)),
        ("character.archive", "character", str(a.id)),
        ("character.archive", "character", str(a.id)),
        ("character.update", "character", str(a.id)),
        ("character.create", "character", str(a.id)),
    ]
    edit = entries[-2]
    assert (edit.actor, edit.what) == ("Ann", "editing a character")
    assert [(c.field, c.before, c.after) for c in edit.changes] == [
        ("description", "netrunner", "retired netrunner")]
    deleted = entries[3]
    assert {c.field: c.before for c in deleted.changes}["original_filename"] == "side.png"
    assert history.count_character_history(character_id=a.id) == 11
    # paged in SQL: pages are slices of the same order
    assert [e.id for e in history.character_history(character_id=a.id, limit=4, offset=4)] == \
        [e.id for e in entries[4:8]]
    assert len(history.character_history(character_id=b.id, limit=100)) == 5  # create, edit, ref, run, tag
    assert history.character_history(character_id=999_999) == []


def test_values_are_shown_on_one_line_and_long_ones_are_cut():
    assert audit_view.short(None) == (audit_view.EMPTY, audit_view.EMPTY)
    assert audit_view.short(["brave", "red scarf"]) == ('["brave", "red scarf"]', '["brave", "red scarf"]')
    assert audit_view.short(True) == ("true", "true")
    text, full = audit_view.short("word " * 50, 40)
    assert len(text) <= 40 and text.endswith("…") and full == "word " * 50


def test_history_at_1000_characters_and_100k_audit_rows_reads_indexes_not_the_trail(editor, capsys):
    a, *_ = _story(editor)
    with session_scope() as s:  # 1,000 characters' worth of trail: edits, references, runs, deletes of others
        s.execute(sa.text("""
            insert into audit_event (at, actor, role, action, entity, entity_id, label, changes)
            select now() - (g || ' seconds')::interval, 'bulk@team.test', 'editor',
                   (array['character.update', 'reference.add', 'generation.request', 'reference.delete'])[g % 4 + 1],
                   (array['character', 'reference', 'run', 'reference'])[g % 4 + 1],
                   (100000 + g % 1000)::text, 'bulk',
                   case when g % 4 = 3 then jsonb_build_object('character_id', jsonb_build_array(100000 + g % 1000, null))
                        else jsonb_build_object('notes', jsonb_build_array('a', 'b')) end
            from generate_series(1, 100000) g"""))
        s.execute(sa.text("analyze audit_event"))
        plan = "\n".join(r[0] for r in s.execute(sa.text("explain " + history._ROWS), {
            "c": a.id, "cs": str(a.id), "n": history.PAGE_SIZE, "o": 0, "upto": history.PAGE_SIZE}))
    # the character's own rows still come back among 100k others, and no branch scans the whole trail
    assert history.count_character_history(character_id=a.id) == 11
    assert len(history.character_history(character_id=a.id)) == 11
    assert history.DELETED_REFERENCE_INDEX_NAME in plan, plan
    assert "Seq Scan on audit_event" not in plan, plan
    with capsys.disabled():
        print(f"\ncharacter history (page + count) at 100k audit rows: p50 {_time_history(a.id):.1f} ms")


def _time_history(character_id: int) -> float:
    """Median ms of one page + its count (printed, never asserted: wall-clock depends on the machine)."""
    timings = []
    for _ in range(20):
        t0 = time.perf_counter()
        history.character_history(character_id=character_id, limit=history.PAGE_SIZE)
        history.count_character_history(character_id=character_id)
        timings.append((time.perf_counter() - t0) * 1000)
    return statistics.median(timings)


def _page(character_id: int) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["editor_name"] = "Tess Tester"
    at.query_params["character"] = str(character_id)
    at.switch_page("pages/characters.py")
    return at.run()


def test_the_history_tab_shows_who_changed_what_with_long_values_cut(editor):
    long = "A former netrunner who " + "remembers every firewall she ever broke, " * 6
    ch = characters.create_character(data=CharacterInput(name="Kira Voss", description="netrunner"), editor=editor)
    characters.update_character(character_id=ch.id, expected_version=1, editor="Ann",
                                data=CharacterInput(name="Kira Voss", description=long))
    at = _page(ch.id)
    assert not at.exception
    tab = next(t for t in at.tabs if t.label == "History")
    text = "\n".join(m.value for m in tab.markdown)
    assert "Ann" in text and "editing a character" in text and "creating a character" in text
    assert "**description**: netrunner → A former netrunner who remembers" in text and "…" in text
    assert any(e.label == "Full values" for e in tab.expander)
    assert any(c.value == long.strip() for c in tab.code)
    assert "2 change(s)" in "\n".join(c.value for c in tab.caption)


def test_the_history_tab_has_a_hint_when_there_is_nothing_yet(editor):
    ch = characters.create_character(data=CharacterInput(name="Old Timer"), editor=editor)
    with session_scope() as s:  # a character from before the audit trail existed
        s.execute(sa.text("delete from audit_event"))
    at = _page(ch.id)
    assert not at.exception
    tab = next(t for t in at.tabs if t.label == "History")
    assert any("No history yet" in i.value for i in tab.info)
