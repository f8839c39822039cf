"""Prompt experiments on real Postgres with real procrastinate workers and the real offline / openai-SDK paths."""
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from core import characters, experiment_results, experiments, media, recovery, review, styles
from core.ai import prompt_registry
from core.characters import CharacterInput
from core.errors import DuplicateError, ValidationError
from core.experiments import ArmSpec
from core.ai.prompt_context import character_context
from db.engine import session_scope
from db.models import AICall, Variation
from tests.openai_stub import image_ok, start_stub
from tests.test_generation import run_worker

DRAFT_LINE = "Draft marker: crisp ink outlines, flat colour."


@pytest.fixture
def cast(editor):
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    out = [characters.create_character(data=CharacterInput(name=n, traits=["t"], style_id=ink.id if i < 2 else None),
                                       editor=editor) for i, n in enumerate(["Ayla", "Bram", "Cass"])]
    base = prompt_registry.file_default("variation_prompt")
    prompt_registry.save_version(name="variation_prompt", body=base + "\nVersion one marker.", author=editor)
    return out


def _draft() -> str:
    return prompt_registry.file_default("variation_prompt") + "\n" + DRAFT_LINE


def _experiment(cast, editor, n_chars: int, slots: list[str], name: str = "p") -> tuple:
    panel = experiments.create_panel(name=name, character_ids=[c.id for c in cast[:n_chars]], slot_keys=slots,
                                     editor=editor)
    exp = experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("draft", body=_draft())],
                                        editor=editor)
    return panel, exp


def _cell_jobs() -> list[dict]:
    with session_scope() as s:
        return [dict(r._mapping) for r in s.execute(sa.text(
            "select status, queue_name from procrastinate_jobs where task_name = 'generate_experiment_cell'"))]


def test_two_characters_one_slot_two_versions_in_a_worker_process(cast, editor):
    from tests.browser import worker_process

    from core import references
    from core.vectors import embeddings
    from core.vectors.embedding_spaces import image_space
    from tests.helpers import image_bytes

    ref = references.add_reference_upload(character_id=cast[0].id, data=image_bytes(size=(96, 128)), filename="a.png",
                                           claimed_mime=None, editor=editor)
    embeddings.embed_subjects(subject_type="reference", ids=[ref.id], spaces=[image_space()])  # drift's space
    _, exp = _experiment(cast, editor, 2, ["portrait_front"])
    jobs = _cell_jobs()
    assert len(jobs) == 4 and {j["queue_name"] for j in jobs} == {"generation"}
    with worker_process():
        deadline = time.monotonic() + 90
        while experiments.progress(experiment_id=exp.id).active and time.monotonic() < deadline:
            time.sleep(0.3)
    cells = experiments.cells(experiment_id=exp.id)
    assert [c.status for c in cells] == ["completed"] * 4, [c.error for c in cells]
    exp = experiments.get_experiment(experiment_id=exp.id)
    for ch in cast[:2]:
        a, b = sorted((c for c in cells if c.character_id == ch.id), key=lambda c: c.arm)
        assert a.seed == b.seed == ch.base_seed + 1  # portrait_front's offset: equal across versions
        ctx = character_context(character_id=ch.id, slot_key="portrait_front")
        assert a.rendered_prompt == prompt_registry.render_body(exp.arms[0]["body"], ctx)
        assert b.rendered_prompt == prompt_registry.render_body(exp.arms[1]["body"], ctx)
        diff = set(b.rendered_prompt.splitlines()) ^ set(a.rendered_prompt.splitlines())
        assert diff == {DRAFT_LINE, "Version one marker."}  # the template is the only variable
        assert media.exists(a.path) and a.path.startswith(f"experiments/{exp.id}/")
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count(Variation.id))).scalar_one() == 0
        calls = s.execute(sa.select(AICall.function, AICall.status)).all()
    assert calls == [("experiment_image", "succeeded")] * 4  # in the cost log like every call
    assert review.coverage() == []  # experiment images never reach the coverage grid
    # identity drift against Ayla's reference; Bram has none, so no score rather than a made-up one
    assert all(0 < c.drift <= 2 for c in cells if c.character_id == cast[0].id)
    assert all(c.drift is None for c in cells if c.character_id == cast[1].id)
    arms = experiment_results.results(experiment_id=exp.id).arms
    assert [r.mean_drift for r in arms] == [pytest.approx(next(c.drift for c in cells if c.arm == a and c.drift))
                                            for a in (0, 1)]


def test_picks_give_hand_checked_win_rate_approval_and_cost_per_approved(cast, editor, settings_override):
    stub, server = start_stub()
    try:
        settings_override(openai_api_key="sk-test", openai_base_url=stub.url, openai_max_retries=0)
        stub.script("/images/generations", *[image_ok(input_tokens=300, output_tokens=4000, image_tokens=200)
                                             for _ in range(12)])
        _, exp = _experiment(cast, editor, 3, ["portrait_front", "action_pose"])
        run_worker(concurrency=2)
    finally:
        server.shutdown()
    cells = experiments.cells(experiment_id=exp.id)
    assert len(cells) == 12 and {c.status for c in cells} == {"completed"}
    # 100 text tokens × $5/M + 200 image tokens × $10/M + 4000 out × $40/M = $0.1625 per image
    assert {c.cost_usd for c in cells} == {Decimal("0.162500")}
    rows = sorted({(c.character_id, c.slot_key) for c in cells})
    for row in rows[:4]:
        experiment_results.record_pick(experiment_id=exp.id, character_id=row[0], slot_key=row[1], outcome="win",
                                       winner_arm=1, reason_codes=["anatomy"], picked_by=editor)
    experiment_results.record_pick(experiment_id=exp.id, character_id=rows[4][0], slot_key=rows[4][1], outcome="win",
                                   winner_arm=0, picked_by=editor)
    experiment_results.record_pick(experiment_id=exp.id, character_id=rows[5][0], slot_key=rows[5][1], outcome="tie",
                                   picked_by=editor)
    res = experiment_results.results(experiment_id=exp.id)
    active, draft = res.arms
    assert (res.rows, res.judged) == (6, 6)
    assert (draft.wins, draft.approved, active.wins, active.approved) == (4, 5, 1, 2)
    lo, hi = draft.win_ci  # Wilson 4/6: centre (.6667+.3201)/1.6403 = .6016, half .2979
    assert (round(lo, 3), round(hi, 3)) == (0.300, 0.903)
    assert draft.cost_per_image == Decimal("0.1625")
    assert draft.cost_per_approved == Decimal("0.975") / 5 and active.cost_per_approved == Decimal("0.975") / 2
    assert active.reasons == {"anatomy": 4} and draft.reasons == {}
    assert res.verdict.startswith("draft wins 4 of 6 rows (67 %, 95 % CI 30 %–90 %)")
    assert "cost per approved image -60 %" in res.verdict
    # changing one's mind replaces the pick, it does not add a row
    experiment_results.record_pick(experiment_id=exp.id, character_id=rows[5][0], slot_key=rows[5][1],
                                   outcome="both_bad", reason_codes=["artifact"], picked_by=editor)
    res = experiment_results.results(experiment_id=exp.id)
    assert res.judged == 6 and res.arms[1].both_bad == 1 and res.arms[1].reasons == {"artifact": 1}

    data, n = experiment_results.export_zip(experiment_id=exp.id)
    import io
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        saved = json.loads(zf.read("results.json"))
    assert n == 12 and "manifest.csv" in names and "templates/arm1.j2" in names
    assert saved["verdict"] == res.verdict and saved["arms"][1]["wins"] == 4


def test_blind_mode_hides_versions_and_shuffles_per_row(cast, editor):
    _, exp = _experiment(cast, editor, 3, ["portrait_front", "action_pose", "sitting_casual"])
    open_rows = experiment_results.compare_rows(experiment_id=exp.id, blind=False)
    assert all([c.label for c in r.columns] == ["v1 (active)", "draft"] for r in open_rows)
    blind = experiment_results.compare_rows(experiment_id=exp.id, blind=True, salt="tess")
    assert all([c.label for c in r.columns] == ["Image A", "Image B"] for r in blind)
    orders = {tuple(c.arm for c in r.columns) for r in blind}
    assert orders == {(0, 1), (1, 0)}  # 9 rows: both orders occur, so position says nothing about version
    again = experiment_results.compare_rows(experiment_id=exp.id, blind=True, salt="tess")
    assert [[c.arm for c in r.columns] for r in again] == [[c.arm for c in r.columns] for r in blind]


def test_picks_wait_for_finished_rows_and_check_their_input(cast, editor):
    _, exp = _experiment(cast, editor, 1, ["portrait_front"])
    cid = cast[0].id
    with pytest.raises(ValidationError, match="not finished"):
        experiment_results.record_pick(experiment_id=exp.id, character_id=cid, slot_key="portrait_front",
                                       outcome="win", winner_arm=0, picked_by=editor)
    run_worker()
    with pytest.raises(ValidationError, match="Unknown reason code"):
        experiment_results.record_pick(experiment_id=exp.id, character_id=cid, slot_key="portrait_front",
                                       outcome="both_bad", reason_codes=["ugly"], picked_by=editor)
    with pytest.raises(ValidationError, match="which image"):
        experiment_results.record_pick(experiment_id=exp.id, character_id=cid, slot_key="portrait_front",
                                       outcome="win", picked_by=editor)
    assert experiment_results.results(experiment_id=exp.id).judged == 0


def test_cancel_then_rerun_failed_cells_only(cast, editor):
    _, exp = _experiment(cast, editor, 2, ["portrait_front"])
    assert experiments.cancel(experiment_id=exp.id, editor=editor) == 4
    run_worker()
    assert experiments.progress(experiment_id=exp.id).counts == {"cancelled": 4}
    assert {j["status"] for j in _cell_jobs()} == {"cancelled"}
    assert len(experiments.rerun_failed(experiment_id=exp.id, editor=editor)) == 4
    run_worker()
    cells = experiments.cells(experiment_id=exp.id)
    assert {(c.status, c.attempt) for c in cells} == {("completed", 2)}
    assert experiments.rerun_failed(experiment_id=exp.id, editor=editor) == []  # nothing failed: nothing queued


def test_promote_a_draft_and_a_saved_version_records_the_experiment(cast, editor):
    _, exp = _experiment(cast, editor, 1, ["portrait_front"])
    v = experiment_results.promote(experiment_id=exp.id, arm=1, editor=editor)
    active = prompt_registry.resolve("variation_prompt")
    assert (v, active.version, active.body) == (2, 2, _draft())
    assert f"experiment #{exp.id}" in prompt_registry.get_version(name="variation_prompt", version=2).note
    v = experiment_results.promote(experiment_id=exp.id, arm=0, editor=editor)  # roll back to v1 the same way
    assert v == 1 and prompt_registry.resolve("variation_prompt").version == 1
    assert f"experiment #{exp.id}" in prompt_registry.get_version(name="variation_prompt", version=1).note
    assert experiments.get_experiment(experiment_id=exp.id).promoted_version == 1


def test_bad_experiments_are_refused_before_anything_is_queued(cast, editor):
    panel = experiments.create_panel(name="one", character_ids=[cast[0].id], slot_keys=[], editor=editor)
    assert experiments.panel_slots(panel)[0] == "portrait_front" and len(experiments.panel_slots(panel)) == 10
    with pytest.raises(DuplicateError, match="exists already"):
        experiments.create_panel(name="ONE", character_ids=[cast[0].id], slot_keys=[], editor=editor)
    with pytest.raises(ValidationError, match="at least two"):
        experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active")], editor=editor)
    with pytest.raises(ValidationError, match="same text"):
        experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("version", version=1)],
                                      editor=editor)
    with pytest.raises(ValidationError, match="draft: Unknown variable"):
        experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("draft", body="{{ nope }}")],
                                      editor=editor)
    with pytest.raises(ValidationError, match="unknown slot"):
        experiments.create_panel(name="two", character_ids=[cast[0].id], slot_keys=["selfie"], editor=editor)
    characters.set_archived(character_id=cast[0].id, expected_version=1, archived=True, editor=editor)
    with pytest.raises(ValidationError, match="Archived characters in panel 'one': Ayla"):
        experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("file")], editor=editor)
    assert experiments.list_experiments() == [] and _cell_jobs() == []


def test_panel_from_style_filter(cast, editor):
    [ink] = styles.list_styles()
    panel = experiments.panel_from_filter(name="ink cast", style_id=ink.id, slot_keys=["action_pose"], editor=editor)
    assert panel.character_ids == [cast[0].id, cast[1].id] and panel.source == "style Ink"
    with pytest.raises(ValidationError, match="No active character matches tag unicorn"):
        experiments.panel_from_filter(name="x", tag="unicorn", slot_keys=[], editor=editor)


def test_production_record_per_version_from_review_decisions(cast, editor):
    from core import generation

    req = generation.request_run(character_id=cast[0].id, requested_by=editor)
    _experiment(cast, editor, 1, ["portrait_front"])  # experiment images are not production
    run_worker()
    vids = [v.id for v in generation.run_status(run_id=req.run_id).slots]
    for vid in vids[:3]:
        review.review(variation_id=vid, decision="approved", reviewer=editor)
    review.review(variation_id=vids[3], decision="rejected", reviewer=editor, reason_codes=["anatomy"])
    [rec] = experiment_results.production_record()
    assert (rec.label, rec.images, rec.approved, rec.rejected) == ("v1", 10, 3, 1)
    assert rec.approval_rate == 0.75 and rec.cost_per_approved == 0


def test_twelve_cells_survive_a_worker_kill(cast, editor):
    import os
    import signal
    import subprocess
    import sys

    from core import generation
    from tests.test_generation import ROOT

    _, exp = _experiment(cast, editor, 3, ["portrait_front", "action_pose"])
    assert len(_cell_jobs()) == 12
    env = dict(os.environ, OFFLINE_LATENCY_S="1.5", STALLED_AFTER_S="2", RECOVERY_INTERVAL_S="3600")
    worker = subprocess.Popen([sys.executable, "workbench.py", "worker", "--concurrency", "3"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [c.status for c in experiments.cells(experiment_id=exp.id)]
            if states.count("completed") >= 3 and "generating" in states:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker never got going: {states}")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = {c.id: (c.status, c.finished_at) for c in experiments.cells(experiment_id=exp.id)}
    stuck = [k for k, (s, _) in before.items() if s == "generating"]
    assert stuck
    time.sleep(2.5)  # the dead worker's heartbeat goes stale
    assert recovery.recover_stalled(seconds_since_heartbeat=2) >= len(stuck)
    run_worker()
    after = {c.id: (c.status, c.finished_at) for c in experiments.cells(experiment_id=exp.id)}
    assert all(s == "completed" for s, _ in after.values()), after
    assert all(after[k][1] == f for k, (s, f) in before.items() if s == "completed")  # kept, not redone


def test_an_image_reaches_the_variations_only_when_an_editor_promotes_it(cast, editor):
    from core.errors import DuplicateError

    _, exp = _experiment(cast, editor, 1, ["portrait_front"])
    run_worker()
    assert review.coverage() == []
    draft_cell = next(c for c in experiments.cells(experiment_id=exp.id) if c.arm == 1)
    vid = experiment_results.promote_image(cell_id=draft_cell.id, editor=editor)
    [row] = review.coverage()
    cell = row.cells["portrait_front"]
    assert (cell.variation_id, cell.status, cell.review_status) == (vid, "completed", "unreviewed")
    assert media.read_bytes(cell.path) == media.read_bytes(draft_cell.path) and media.exists(cell.thumb_path)
    with session_scope() as s:
        v = s.get(Variation, vid)
    assert v.seed == draft_cell.seed and DRAFT_LINE in v.rendered_prompt and f"experiment #{exp.id}" in v.review_note
    with pytest.raises(DuplicateError, match="already among"):
        experiment_results.promote_image(cell_id=draft_cell.id, editor=editor)
