"""Experiment cells are fenced like run slots: a paused worker never pays or commits twice, and a cell whose
job ended without a result is closed by recovery instead of staying 'generating' forever."""
import sqlalchemy as sa

from core import experiment_cells, experiments, media, recovery
from db.engine import session_scope
from db.models import AICall
from db.models_experiments import ExperimentCell
from tests.test_experiments import _experiment, cast  # noqa: F401  (fixture)


def _job_of(cell_id: int) -> int:
    with session_scope() as s:
        return s.execute(sa.select(ExperimentCell.job_id).where(ExperimentCell.id == cell_id)).scalar_one()


def _calls() -> int:
    """Provider calls that went through (a call stopped at the gate is logged as failed: nothing spent)."""
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count(AICall.id)).where(AICall.status == "succeeded")).scalar_one()


def test_a_paused_worker_stops_at_the_gate_and_pays_nothing(cast, editor):  # noqa: F811
    _, exp = _experiment(cast, editor, 1, ["portrait_front"])
    cell = experiments.cells(experiment_id=exp.id)[0]
    job = _job_of(cell.id)
    paused = experiment_cells.claim_cell(cell_id=cell.id, job_id=job)  # worker A claims, then freezes
    experiment_cells.requeue_stalled_cell(cell_id=cell.id)  # recovery: A went silent
    assert experiment_cells.execute_cell(cell_id=cell.id, job_id=job) == "completed"  # the retried job
    winner = next(c for c in experiments.cells(experiment_id=exp.id) if c.id == cell.id)
    calls = _calls()
    assert experiment_cells.run_claimed_cell(paused) == "lost"  # A wakes up
    assert _calls() == calls  # no second paid call
    after = next(c for c in experiments.cells(experiment_id=exp.id) if c.id == cell.id)
    assert (after.status, after.path, after.finished_at) == ("completed", winner.path, winner.finished_at)
    assert media.exists(winner.path)


def test_a_result_that_lost_its_claim_after_the_call_is_discarded_with_its_files(cast, editor,  # noqa: F811
                                                                                 settings_override):
    import threading
    import time

    settings_override(offline_latency_s=3)
    _, exp = _experiment(cast, editor, 1, ["portrait_front"])
    cell = experiments.cells(experiment_id=exp.id)[0]
    mine = experiment_cells.claim_cell(cell_id=cell.id, job_id=_job_of(cell.id))
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(experiment_cells.run_claimed_cell(mine)))
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the call is logged (running), then passes the gate into a 3 s call
        with session_scope() as s:
            if s.execute(sa.select(AICall.id).where(AICall.status == "running")).first():
                break
        time.sleep(0.05)
    time.sleep(1.0)
    with session_scope() as s:  # recovery hands the cell to a retried job while the call is in flight
        s.execute(sa.update(ExperimentCell).where(ExperimentCell.id == cell.id)
                  .values(claim=ExperimentCell.claim + 1))
    worker.join(30)
    assert result == ["discarded"]
    row = next(c for c in experiments.cells(experiment_id=exp.id) if c.id == cell.id)
    assert row.status == "generating" and row.path is None  # the new holder's to finish
    folder = media.resolve(f"experiments/{exp.id}")
    assert not folder.exists() or not [p for p in folder.iterdir() if p.is_file()]  # the loser's files are gone


def test_recovery_closes_cells_whose_job_ended_without_a_result(cast, editor):  # noqa: F811
    _, exp = _experiment(cast, editor, 2, ["portrait_front"])
    cells = experiments.cells(experiment_id=exp.id)
    stuck, waiting = cells[0], cells[1]
    experiment_cells.claim_cell(cell_id=stuck.id, job_id=_job_of(stuck.id))
    with session_scope() as s:  # a database outage: the worker's job ended as failed, the cell stayed generating
        s.execute(sa.text("update procrastinate_jobs set status = 'failed' where id = :j"), {"j": _job_of(stuck.id)})
        s.execute(sa.text("delete from procrastinate_jobs where id = :j"), {"j": _job_of(waiting.id)})
    report = recovery.reconcile()
    assert report.slots_closed == 2
    by_id = {c.id: c for c in experiments.cells(experiment_id=exp.id)}
    assert by_id[stuck.id].status == "failed" and "ended as 'failed'" in by_id[stuck.id].error
    assert by_id[waiting.id].status == "failed" and "disappeared" in by_id[waiting.id].error
    untouched = [c for c in cells[2:]]
    assert all(by_id[c.id].status == "pending" for c in untouched)
    assert sorted(experiments.rerun_failed(experiment_id=exp.id, editor=editor)) == sorted([stuck.id, waiting.id])
