"""The Audit page in AppTest over a real trail: filters narrow the rows, paging walks them newest first,
an empty result says so with a hint, long values are cut with the full text kept, and only editors read it."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import characters, styles
from core.characters import CharacterInput
from core.team import audit_view
from db.engine import session_scope
from db.models_team import AuditEvent, Member

ROOT = Path(__file__).resolve().parent.parent
ADMIN, EDITOR = "admin@example.com", "editor@example.com"
DAY = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def team():
    with session_scope() as s:
        s.add_all([Member(identity=ADMIN, role="admin"), Member(identity=EDITOR, role="editor"),
                   Member(identity="viewer@example.com", role="viewer")])


def _seed(n_days: int = 3, per_day: int = 25) -> None:
    """Style edits by the admin and character edits by the editor, spread over n_days from DAY."""
    with session_scope() as s:
        for d in range(n_days):
            for i in range(per_day):
                at = DAY + timedelta(days=d, minutes=i)
                if i % 5 == 0:
                    s.add(AuditEvent(at=at, actor=ADMIN, role="admin", action="style.update", entity="style",
                                     entity_id="1", label="Ink", changes={"name": [f"Ink {d}.{i}", f"Ink {d}.{i + 1}"]}))
                else:
                    s.add(AuditEvent(at=at, actor=EDITOR, role="editor", action="character.update",
                                     entity="character", entity_id=str(i), label=f"C{i}",
                                     changes={"description": ["old", f"day {d} edit {i}"]}))


def _page(who: str = EDITOR) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "audit.py"), default_timeout=60)
    at.session_state["editor_name"] = who
    return at.run()


def _shown(at: AppTest) -> list[str]:
    """The bold header line of each row on the page (action · entity)."""
    return [m.value for m in at.markdown if m.value.startswith("**")]


def _range(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Rows "))


def test_filters_narrow_the_rows_and_paging_walks_them_newest_first():
    _seed()
    at = _page()
    assert not at.exception
    assert _range(at) == "Rows 1–50 of 75 · page 1 of 2"
    rows = _shown(at)
    assert len(rows) == 50 and rows[0].startswith("**character.update** · character #24")  # the newest
    assert "2026-03-12 12:24:00 UTC · editor@example.com (editor)" in rows[0]
    at.button(key="audit_next").click().run()
    assert _range(at) == "Rows 51–75 of 75 · page 2 of 2" and len(_shown(at)) == 25
    assert at.button(key="audit_next").disabled and not at.button(key="audit_prev").disabled

    at.selectbox(key="audit_actor").select(ADMIN).run()  # a filter change goes back to page 1
    assert _range(at) == "Rows 1–15 of 15 · page 1 of 1"
    assert all(r.startswith("**style.update**") for r in _shown(at))
    at.selectbox(key="audit_actor").select(None).run()
    at.selectbox(key="audit_entity").select("character").run()
    assert _range(at).endswith("of 60 · page 1 of 2")
    at.selectbox(key="audit_action").select("style.update").run()
    assert any("No audit rows match these filters" in i.value for i in at.info)  # character × style.update
    at.selectbox(key="audit_entity").select(None).run()
    assert _range(at) == "Rows 1–15 of 15 · page 1 of 1"
    at.selectbox(key="audit_action").select(None).run()
    at.date_input(key="audit_since").set_value(date(2026, 3, 11)).run()
    at.date_input(key="audit_until").set_value(date(2026, 3, 11)).run()  # one whole day, both ends included
    assert _range(at) == "Rows 1–25 of 25 · page 1 of 1"
    assert all("day 1 edit" in m.value for m in at.markdown if "description" in m.value)


def test_an_empty_trail_and_an_empty_result_each_get_a_hint():
    at = _page()
    assert not at.exception and any("The audit trail is empty" in i.value for i in at.info)
    _seed(1, 5)
    at = _page()
    at.date_input(key="audit_since").set_value(date(2030, 1, 1)).run()
    assert any("No audit rows match these filters. Widen the dates" in i.value for i in at.info)
    at.date_input(key="audit_until").set_value(date(2029, 1, 1)).run()
    assert any("is before the start date" in e.value for e in at.error)


def test_real_writes_show_who_role_and_before_after_and_long_values_are_cut():
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=ADMIN)
    long = "Bold ink outlines. " * 30
    styles.update_style(style_id=ink.id, expected_version=ink.version, editor=ADMIN,
                        data=styles.StyleInput(name="Ink", prompt_fragment=long))
    at = _page()
    assert not at.exception
    assert _shown(at)[0].startswith("**style.update** · style #") and "admin@example.com (admin)" in _shown(at)[0]
    change = next(m.value for m in at.markdown if m.value.startswith("- **prompt"))
    assert "∅" not in change and "…" in change and len(change) < 200  # the inline value is cut…
    assert any(c.value == long.strip() for c in at.code)  # …and the full one is behind "Full values"


def test_character_rows_link_to_the_character_and_viewers_are_refused():
    ch = characters.create_character(data=CharacterInput(name="Ayla"), editor=ADMIN)
    with session_scope() as s:
        s.add(AuditEvent(actor=EDITOR, role="editor", action="character.update", entity="character",
                         entity_id=str(ch.id), label="Ayla", changes={"name": ["Aila", "Ayla"]}))
        s.add(AuditEvent(actor=EDITOR, role="editor", action="reference.add", entity="reference", entity_id="9",
                         label="a.png", changes={"character_id": [None, ch.id]}))
    rows = audit_view.page_of(who=ADMIN, filters=audit_view.make_filter(actor=EDITOR)).rows
    links = {r.entity: r.link for r in rows}
    assert links["character"] == audit_view.Link("pages/characters.py", {"character": str(ch.id)}, "Open character")
    assert links["reference"].query_params == {"character": str(ch.id)}
    at = _page()
    assert not at.exception  # outside the app's navigation the link falls back to text naming the page
    assert any("Open character on pages/characters.py" in c.value for c in at.caption)

    at = _page("viewer@example.com")
    assert any("Reading the audit trail needs the editor role; you are a viewer" in w.value for w in at.warning)
    assert not _shown(at)


def test_values_read_plainly_none_empty_lists_and_long_text():
    changes = audit_view.field_changes({"note": [None, ""], "palette": [["#000000"], []],
                                        "body": ["short", "x " * 200], "active": [True, False]})
    shown = {c.field: (c.before, c.after) for c in changes}
    assert shown["note"] == ("∅", "(empty)") and shown["palette"] == ('["#000000"]', "(empty)")
    assert shown["active"] == ("true", "false")
    body = next(c for c in changes if c.field == "body")
    assert body.truncated and len(body.after) == audit_view.VALUE_MAX and body.after_full == "x " * 200


def test_the_trail_is_refused_to_a_viewer_in_core_not_only_on_the_page():
    from core.errors import PermissionDenied

    _seed(n_days=1, per_day=5)
    with pytest.raises(PermissionDenied, match="Reading the audit trail needs the editor role; you are a viewer."):
        audit_view.page_of(who="viewer@example.com", filters=audit_view.make_filter())
    assert audit_view.page_of(who=EDITOR, filters=audit_view.make_filter()).total == 5
