"""Admin-side writes on real Postgres: each is refused below its role (nothing changes, no audit row), and
each permitted write leaves exactly one audit row with the changed fields before → after.

People are member rows with a role; the refusal names the role the write needs and the role held.
"""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from core import characters, experiment_results, experiments, styles, tags
from core.ai import prompt_registry
from core.characters import CharacterInput
from core.errors import PermissionDenied
from core.experiments import ArmSpec
from core.team import audit
from db.engine import session_scope
from db.models import PromptVersion, Style, Variation
from db.models_experiments import Experiment, ExperimentPick, Panel
from db.models_team import AuditEvent, Member
from tests.test_generation import run_worker

from tests.team import ADMIN, EDITOR, REVIEWER, VIEWER, add_team, last_audit_id


@pytest.fixture(autouse=True)
def team():
    add_team()


_last_id = last_audit_id


def _rows_since(mark: int, *, action: str | None = None) -> list[AuditEvent]:
    """Audit rows written after `mark`, oldest first (of one action when given: other areas audit their own)."""
    rows = [e for e in audit.events(limit=10_000) if e.id > mark and (action is None or e.action == action)]
    return sorted(rows, key=lambda e: e.id)


@contextmanager
def refused(role_needed: str, role_held: str):
    """The block must raise PermissionDenied naming both roles and leave no audit row."""
    mark = _last_id()
    with pytest.raises(PermissionDenied, match=f"needs the {role_needed} role; you are an? {role_held}"):
        yield
    assert _rows_since(mark) == []


@contextmanager
def one_row(action: str):
    """The block must leave exactly one audit row of `action`; yields a list that receives it."""
    mark = _last_id()
    got: list[AuditEvent] = []
    yield got
    rows = _rows_since(mark, action=action)
    assert len(rows) == 1, [(r.action, r.entity, r.entity_id) for r in rows]
    got.append(rows[0])


def _count(model) -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


# ---------------------------------------------------------------- styles
def test_styles_need_an_admin_and_each_write_leaves_one_row_with_its_fields():
    data = styles.StyleInput(name="Ink", description="black lines", palette=["#000000"])
    with refused("admin", "editor"):
        styles.create_style(data=data, editor=EDITOR)
    assert styles.list_styles() == []
    with one_row("style.create") as got:
        ink = styles.create_style(data=data, editor=ADMIN)
    row = got[0]
    assert (row.actor, row.role, row.entity, row.entity_id, row.label) == (ADMIN, "admin", "style", str(ink.id), "Ink")
    assert row.changes == {"name": [None, "Ink"], "description": [None, "black lines"],
                           "palette": [None, ["#000000"]], "prompt_fragment": [None, ""]}

    with refused("admin", "editor"):
        styles.update_style(style_id=ink.id, expected_version=ink.version, data=styles.StyleInput(name="Ink 2"),
                            editor=EDITOR)
    assert styles.get_style(style_id=ink.id).name == "Ink"
    with one_row("style.update") as got:
        styles.update_style(style_id=ink.id, expected_version=ink.version, editor=ADMIN,
                            data=styles.StyleInput(name="Ink & Wash", description="black lines", palette=["#000000"]))
    assert got[0].changes == {"name": ["Ink", "Ink & Wash"]}  # only what changed

    with refused("admin", "reviewer"):
        styles.delete_style(style_id=ink.id, editor=REVIEWER)
    assert styles.get_style(style_id=ink.id)
    with one_row("style.delete") as got:
        styles.delete_style(style_id=ink.id, editor=ADMIN)
    assert _count(Style) == 0
    assert got[0].changes["name"] == ["Ink & Wash", None]  # the trail still says what was deleted


def test_a_failed_write_or_a_deactivated_member_leaves_no_row():
    from core.errors import DuplicateError

    styles.create_style(data=styles.StyleInput(name="Ink"), editor=ADMIN)
    with session_scope() as s:
        s.add(Member(identity="gone@example.com", role="admin", active=False))
    mark = _last_id()
    with pytest.raises(DuplicateError):  # the write fails after authorize: its audit row rolls back with it
        styles.create_style(data=styles.StyleInput(name="ink"), editor=ADMIN)
    with pytest.raises(PermissionDenied, match="not a member of this workbench yet"):
        styles.create_style(data=styles.StyleInput(name="Other"), editor="gone@example.com")
    assert _rows_since(mark) == [] and [s.name for s in styles.list_styles()] == ["Ink"]


# ---------------------------------------------------------------- tags
def test_tag_definitions_need_an_admin_and_are_audited_per_tag():
    with refused("admin", "editor"):
        tags.create_tag(name="villain", description="a bad one", editor=EDITOR, embed=False)
    with refused("admin", "editor"):
        tags.load_starter_tags(editor=EDITOR)
    assert tags.list_tags() == []
    with one_row("tag.create") as got:
        tid = tags.create_tag(name="Villain", description="a bad one", editor=ADMIN, embed=False)
    assert (got[0].entity, got[0].entity_id, got[0].changes) == (
        "tag", str(tid), {"name": [None, "villain"], "description": [None, "a bad one"]})

    with refused("admin", "editor"):
        tags.update_tag(tag_id=tid, name="villain", description="changed", editor=EDITOR)
    with one_row("tag.update") as got:
        tags.update_tag(tag_id=tid, name="villain", description="an antagonist", editor=ADMIN)
    assert got[0].changes == {"description": ["a bad one", "an antagonist"]}

    with refused("admin", "viewer"):
        tags.delete_tag(tag_id=tid, editor=VIEWER)
    assert [t.description for t in tags.list_tags()] == ["an antagonist"]
    with one_row("tag.delete") as got:
        tags.delete_tag(tag_id=tid, editor=ADMIN)
    assert tags.list_tags() == [] and got[0].changes["name"] == ["villain", None]

    spec = json.loads(tags.STARTER_FILE.read_text())["tags"]
    mark = _last_id()
    assert tags.load_starter_tags(editor=ADMIN) == len(spec)
    rows = _rows_since(mark)
    assert len(rows) == len(spec) and {r.action for r in rows} == {"tag.create"}  # one row per tag added
    assert {r.changes["name"][1] for r in rows} == {t["name"].lower() for t in spec}
    mark = _last_id()
    assert tags.load_starter_tags(editor=ADMIN) == 0 and _rows_since(mark) == []  # nothing added, nothing recorded


# ---------------------------------------------------------------- prompts
BODY = "A portrait of {{ character.name }}."


def test_editors_save_drafts_admins_activate():
    with refused("editor", "reviewer"):
        prompt_registry.save_version(name="variation_prompt", body=BODY, author=REVIEWER, activate=False)
    with refused("admin", "editor"):  # saving AND activating: the activation needs an admin
        prompt_registry.save_version(name="variation_prompt", body=BODY, author=EDITOR)
    assert _count(PromptVersion) == 0
    with one_row("prompt.save") as got:
        draft = prompt_registry.save_version(name="variation_prompt", body=BODY, author=EDITOR, note="shorter",
                                             activate=False)
    assert not draft.is_active and prompt_registry.resolve("variation_prompt").layer == "file"
    assert (got[0].entity, got[0].entity_id, got[0].role) == ("prompt", "variation_prompt", "editor")
    assert got[0].changes == {"version": [None, 1], "body": [None, BODY], "note": [None, "shorter"]}

    with refused("admin", "editor"):
        prompt_registry.activate(name="variation_prompt", version=1, editor=EDITOR)
    assert prompt_registry.resolve("variation_prompt").layer == "file"
    with one_row("prompt.activate") as got:
        prompt_registry.activate(name="variation_prompt", version=1, editor=ADMIN)
    assert got[0].changes == {"active_version": [None, 1]}
    assert prompt_registry.resolve("variation_prompt").version == 1

    long_body = BODY + "\n" + "Detail line. " * 400  # prompt bodies are stored in full; the page shortens them
    with one_row("prompt.save") as got:
        prompt_registry.save_version(name="variation_prompt", body=long_body, author=ADMIN)
    assert got[0].changes["body"] == [None, long_body] and got[0].changes["active_version"] == [1, 2]


# ---------------------------------------------------------------- experiments
@pytest.fixture
def cast():
    return [characters.create_character(data=CharacterInput(name=n, traits=["t"]), editor=ADMIN)
            for n in ("Ayla", "Bram")]


def _draft() -> str:
    return prompt_registry.file_default("variation_prompt") + "\nDraft marker line."


def _jobs() -> int:
    with session_scope() as s:
        return s.execute(sa.text("select count(*) from procrastinate_jobs "
                                 "where task_name = 'generate_experiment_cell'")).scalar_one()


def test_panels_and_experiments_need_an_editor_and_are_audited(cast):
    ids = [c.id for c in cast]
    with refused("editor", "reviewer"):
        experiments.create_panel(name="p", character_ids=ids, slot_keys=["portrait_front"], editor=REVIEWER)
    with refused("editor", "viewer"):
        experiments.panel_from_filter(name="p", slot_keys=[], tag="x", editor=VIEWER)
    assert _count(Panel) == 0
    with one_row("panel.create") as got:
        panel = experiments.create_panel(name="p", character_ids=ids, slot_keys=["portrait_front"], editor=EDITOR)
    assert got[0].changes["character_ids"] == [None, ids] and got[0].entity_id == str(panel.id)

    specs = [ArmSpec("active"), ArmSpec("draft", body=_draft())]
    with refused("editor", "reviewer"):
        experiments.create_experiment(panel_id=panel.id, specs=specs, editor=REVIEWER)
    assert _count(Experiment) == 0 and _jobs() == 0  # refused before anything is queued
    with one_row("experiment.create") as got:
        exp = experiments.create_experiment(panel_id=panel.id, specs=specs, editor=EDITOR)
    assert got[0].changes["cells"] == [None, 4] and got[0].changes["arms"][1][1]["body"] == _draft()
    assert _jobs() == 4

    with refused("editor", "reviewer"):
        experiments.cancel(experiment_id=exp.id, editor=REVIEWER)
    assert experiments.progress(experiment_id=exp.id).counts == {"pending": 4}
    with one_row("experiment.cancel") as got:
        assert experiments.cancel(experiment_id=exp.id, editor=EDITOR) == 4
    assert got[0].changes == {"cancelled": [False, True], "cells_cancelled": [0, 4]}

    with refused("editor", "reviewer"):
        experiments.rerun_failed(experiment_id=exp.id, editor=REVIEWER)
    assert experiments.progress(experiment_id=exp.id).counts == {"cancelled": 4}
    with one_row("experiment.rerun") as got:
        requeued = experiments.rerun_failed(experiment_id=exp.id, editor=EDITOR)
    assert got[0].changes == {"cancelled": [True, False], "cells_requeued": [[], requeued]} and len(requeued) == 4


def test_picks_need_a_reviewer_promotion_needs_an_admin_and_each_is_one_row(cast):
    panel = experiments.create_panel(name="p", character_ids=[cast[0].id], slot_keys=["portrait_front"],
                                     editor=EDITOR)
    exp = experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("file"), ArmSpec("draft", body=_draft())],
                                        editor=EDITOR)
    run_worker()
    row = dict(experiment_id=exp.id, character_id=cast[0].id, slot_key="portrait_front")
    with refused("reviewer", "viewer"):
        experiment_results.record_pick(**row, outcome="win", winner_arm=1, picked_by=VIEWER)
    assert _count(ExperimentPick) == 0
    with one_row("experiment.pick") as got:
        experiment_results.record_pick(**row, outcome="win", winner_arm=1, reason_codes=["anatomy"], picked_by=REVIEWER)
    assert got[0].changes == {"outcome": [None, "win"], "winner_arm": [None, 1], "reason_codes": [None, ["anatomy"]],
                              "note": [None, ""]}
    assert got[0].label.endswith("Ayla · portrait_front")
    with one_row("experiment.pick") as got:  # changing one's mind: the row says from what to what
        experiment_results.record_pick(**row, outcome="tie", picked_by=REVIEWER)
    assert got[0].changes == {"outcome": ["win", "tie"], "winner_arm": [1, None], "reason_codes": [["anatomy"], []]}

    with refused("admin", "editor"):  # promoting changes which template version is live
        experiment_results.promote(experiment_id=exp.id, arm=1, editor=EDITOR)
    assert _count(PromptVersion) == 0 and experiments.get_experiment(experiment_id=exp.id).promoted_arm is None
    with one_row("experiment.promote") as got:
        version = experiment_results.promote(experiment_id=exp.id, arm=1, editor=ADMIN)
    assert version == 1 and prompt_registry.resolve("variation_prompt").version == 1
    assert got[0].changes == {"promoted_arm": [None, 1], "promoted_version": [None, 1], "promoted_by": [None, ADMIN],
                              "active_version": [None, 1]}
    assert _rows_since(got[0].id - 1, action="prompt.save") == []  # one row for the whole promotion

    cell = next(c for c in experiments.cells(experiment_id=exp.id) if c.arm == 1)
    with refused("editor", "reviewer"):
        experiment_results.promote_image(cell_id=cell.id, editor=REVIEWER)
    assert _count(Variation) == 0
    with one_row("experiment.promote") as got:
        vid = experiment_results.promote_image(cell_id=cell.id, editor=EDITOR)
    assert (got[0].entity, got[0].entity_id) == ("variation", str(vid))
    assert got[0].changes["character_id"] == [None, cast[0].id]  # so the character's history can find it


# ---------------------------------------------------------------- demo
def test_demo_load_needs_an_admin_and_leaves_a_summary_row():
    with refused("admin", "editor"):
        from core.demo import load_demo_cast

        load_demo_cast(editor=EDITOR)
    assert styles.list_styles() == [] and characters.list_characters() == []
    mark = _last_id()
    res = load_demo_cast(editor=ADMIN)
    [summary] = _rows_since(mark, action="demo.load")
    assert summary.changes["characters_added"] == [None, res.characters_added]
    assert summary.changes["styles_added"] == [None, res.styles_added]
    assert len(_rows_since(mark, action="style.create")) == res.styles_added  # each style its own row
    mark = _last_id()
    again = load_demo_cast(editor=ADMIN)
    assert again.characters_added == 0 and _rows_since(mark) == []  # nothing added: nothing recorded


# ---------------------------------------------------------------- pages
def test_prompts_page_lets_an_editor_save_a_draft_and_says_why_activate_is_off():
    from tests.test_pages import _click, _page

    at = _page("pages/prompts.py", editor=EDITOR)
    at.selectbox(key="prompt_template").select("variation_prompt").run()
    make_active = at.checkbox(key="make_active_variation_prompt")
    assert make_active.disabled and make_active.value is False
    assert "Activating a prompt version needs the admin role; you are an editor" in make_active.help
    at.text_area(key="draft_variation_prompt").input(BODY).run()
    at = _click(at, "Save as new version")
    assert not at.exception and any("as a draft version" in s.value for s in at.success)
    [pv] = prompt_registry.list_versions(name="variation_prompt")
    assert (pv.body, pv.is_active, pv.author) == (BODY, False, EDITOR)
    activate = at.button(key="activate_btn")
    assert activate.disabled and "needs the admin role" in activate.help


def test_styles_and_tags_show_non_admins_why_they_cannot_change_them():
    from tests.test_pages import _page

    styles.create_style(data=styles.StyleInput(name="Ink"), editor=ADMIN)
    at = _page("pages/styles.py", editor=EDITOR)
    assert not at.exception
    assert any("Editing a style needs the admin role; you are an editor" in c.value for c in at.caption)
    at = _page("pages/embeddings.py", editor=EDITOR)

    starter = at.button(key="starter_tags")
    assert starter.disabled and "Creating a tag needs the admin role" in starter.help
    at = _page("pages/styles.py", editor=ADMIN)
    assert not any("needs the admin role" in c.value for c in at.caption)


def test_experiments_page_lets_a_reviewer_pick_but_not_start_or_promote(cast):
    from tests.test_pages import _page

    panel = experiments.create_panel(name="p", character_ids=[cast[0].id], slot_keys=["portrait_front"],
                                     editor=EDITOR)
    experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("file"), ArmSpec("draft", body=_draft())],
                                  editor=EDITOR)
    run_worker()
    at = _page("pages/experiments.py", editor=REVIEWER)
    assert not at.exception
    assert not at.button(key="cx_win_0").disabled and not at.button(key="cx_tie").disabled
    at.button(key="cx_tie").click().run()
    assert not at.exception and _count(ExperimentPick) == 1
    at = _page("pages/experiments.py", editor=REVIEWER, run=False)
    at.session_state["ex_section"] = "Results"
    at.run()
    promote = at.button(key="rs_promote_1")
    assert promote.disabled and "needs the editor role; you are a reviewer" in promote.help
    at = _page("pages/experiments.py", editor=REVIEWER, run=False)
    at.session_state["ex_section"] = "Panels"
    at.run()
    create = at.button(key="pn_create")
    assert create.disabled and "Creating an experiment panel needs the editor role" in create.help
