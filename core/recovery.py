"""Recovery: nothing stays stuck after a dead worker, a paused worker or a database outage.

Every worker runs `recover()` at start and every RECOVERY_INTERVAL_S. It

1. hands the jobs of silent workers (no heartbeat for STALLED_AFTER_S) to a fresh
   job: the old job is aborted, the slot goes back to `pending` with a new job id
   (the next claim bumps the slot's claim number, so the silent worker, should it
   wake up, is fenced out);
2. reconciles slots against their jobs in every state: a slot still `pending` or
   `generating` whose job ended (succeeded, failed, cancelled, aborted), vanished or
   was never queued, or that has been generating longer than a slot can take, is
   failed (or cancelled) with a message the editor can act on ("Retry failed slots");
3. closes `ai_call` rows left `running` by a lost worker or an outage as `failed`
   ("worker lost" / "database unavailable"), so the Activity page counts true;
4. closes runs that have no active slot left and writes their metadata.json;
5. deletes files under a run's variations folder that no committed row points at
   and that no live claim is still writing (a slot whose final UPDATE never
   committed), plus temp files of interrupted writes.

Each change is a fenced UPDATE (status, claim and job checked in the statement),
so recovery never overrides a worker that finished in the meantime.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from core import media
from core.experiment_cells import close_orphaned_cells
from core.fencing import parse_variation_file
from core.generation import ACTIVE_SLOT_STATES, _maybe_finish_run
from core.settings import get_settings
from db.engine import session_scope
from db.models import RUN_ACTIVE, AICall, Character, GenerationRun, Variation, utcnow

log = logging.getLogger(__name__)

NEVER_QUEUED_GRACE_S = 120  # request_run commits the rows, then defers: a slot without a job this long was never queued
TEMP_FILE_GRACE_S = 3600  # a .tmp- file of write_atomic older than this belongs to an interrupted write
RECENT_RUNS_S = 24 * 3600  # the periodic file sweep looks at runs active or finished this recently


@dataclass
class RecoveryReport:
    requeued: int = 0
    slots_closed: int = 0
    calls_closed: int = 0
    runs_closed: int = 0
    files_removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.slots_closed or self.calls_closed or self.runs_closed or self.files_removed)


# ---------------------------------------------------------------- stalled jobs
def _finish_job(job_id: int, status: str) -> None:
    """End a job we took over; a job already ended is left as it is."""
    with session_scope() as s:
        s.execute(sa.text("update procrastinate_jobs set status = cast(:st as procrastinate_job_status), "
                          "abort_requested = false where id = :id and status in ('todo', 'doing')"),
                  {"id": job_id, "st": status})


def _close_calls_of_jobs(job_ids: list[int], error: str) -> int:
    if not job_ids:
        return 0
    with session_scope() as s:
        return s.execute(sa.update(AICall).where(AICall.job_id.in_(job_ids), AICall.status == "running")
                         .values(status="failed", error=error)).rowcount


def hand_over_slot(*, job_id: int, variation_id: int, reason: str) -> int | None:
    """Give a slot whose job was lost a new job; returns the new job id (None if the slot moved on).

    The row lock is held while the new job is deferred: a worker that fetches it at once waits on the
    lock in its claim and then finds the slot pending for exactly that job."""
    from core.jobs import defer_slots

    with session_scope() as s:
        row = s.execute(sa.select(Variation.status, Variation.job_id).where(Variation.id == variation_id)
                        .with_for_update()).first()
        if row is None or row.status not in ACTIVE_SLOT_STATES or row.job_id not in (None, job_id):
            new_job = None
        else:
            # in this transaction: the new job becomes visible together with the slot that points at it
            (new_job,) = defer_slots(variation_ids=[variation_id],
                                     connection=s.connection().connection.driver_connection)
            s.execute(sa.update(Variation).where(Variation.id == variation_id).values(
                status="pending", provider_called_at=None, job_id=new_job, error=reason))
    _finish_job(job_id, "aborted")
    _close_calls_of_jobs([job_id], f"worker lost: {reason}")
    return new_job


def release_jobs(*, job_ids: list[int], reason: str) -> int:
    """A stopping worker hands its unfinished slot jobs over at once instead of waiting to look stalled."""
    released = 0
    with session_scope() as s:
        rows = s.execute(sa.text("select id, args from procrastinate_jobs where id = any(:ids) and status = 'doing'"),
                         {"ids": list(job_ids)}).all()
    for job_id, args in rows:
        vid = (args or {}).get("variation_id")
        if vid is not None and hand_over_slot(job_id=job_id, variation_id=vid, reason=reason) is not None:
            released += 1
    return released


def recover_stalled(*, seconds_since_heartbeat: float = 30) -> int:
    """Jobs stuck in 'doing' under a silent worker: slot jobs are handed to a new job, other jobs retried."""
    from procrastinate import sql as psql

    from core.jobs import GENERATE_SLOT, get_app, retry_stalled_job

    app = get_app()
    rows = app.connector.get_sync_connector().execute_query_all(
        query=psql.queries["select_stalled_jobs_by_heartbeat"], queue=None, task_name=None,
        seconds_since_heartbeat=seconds_since_heartbeat)
    recovered = 0
    reason = f"worker stopped (no heartbeat for {seconds_since_heartbeat:g} s); retried"
    for row in rows:
        vid = (row["args"] or {}).get("variation_id")
        if row["task_name"] == GENERATE_SLOT and vid is not None:
            new_job = hand_over_slot(job_id=row["id"], variation_id=vid, reason=reason)
            log.warning("stalled slot job %s (variation %s) handed to job %s", row["id"], vid, new_job)
        else:
            if (row["args"] or {}).get("cell_id") is not None:  # a prompt-experiment cell: back to pending first
                from core.experiment_cells import requeue_stalled_cell

                requeue_stalled_cell(cell_id=row["args"]["cell_id"])
            _close_calls_of_jobs([row["id"]], f"worker lost: {reason}")
            retry_stalled_job(job_id=row["id"])  # an embed_pending job whose successor waits is failed instead
            log.warning("stalled job %s (%s) retried", row["id"], row["task_name"])
        recovered += 1
    return recovered


# ---------------------------------------------------------------- slots, calls, runs
def _close_orphaned_slots(report: RecoveryReport) -> set[int]:
    timeout = get_settings().slot_timeout_bound_s
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select v.id, v.run_id, v.status, v.claim, v.job_id, j.status as job_status,
                   (v.status = 'generating' and v.started_at < now() - make_interval(secs => :timeout)) as overdue
              from variation v left join procrastinate_jobs j on j.id = v.job_id
             where v.status in ('pending', 'generating')
               and ((v.job_id is not null and (j.id is null or j.status not in ('todo', 'doing')))
                    or (v.job_id is null and v.created_at < now() - make_interval(secs => :grace))
                    or (v.status = 'generating' and v.started_at < now() - make_interval(secs => :timeout)))
        """), {"timeout": timeout, "grace": NEVER_QUEUED_GRACE_S}).all()
    runs: set[int] = set()
    for r in rows:
        if r.job_status == "cancelled":
            status, error = "cancelled", "cancelled (its job was cancelled)"
        elif r.overdue and r.job_status in ("todo", "doing"):
            status, error = "failed", f"timed out: no result after {timeout:g} s; retry it"
        elif r.job_id is None:
            status, error = "failed", "never queued (the job queue was unreachable); retry it"
        elif r.job_status is None:
            status, error = "failed", "interrupted: its job disappeared before the result was saved; retry it"
        else:
            status, error = "failed", (f"interrupted: its job ended as '{r.job_status}' before the result was saved "
                                       "(worker lost or database unavailable); retry it")
        with session_scope() as s:
            done = s.execute(sa.update(Variation).where(
                Variation.id == r.id, Variation.status == r.status, Variation.claim == r.claim,
                Variation.job_id.is_(None) if r.job_id is None else Variation.job_id == r.job_id,
            ).values(status=status, error=error, finished_at=utcnow())).rowcount
        if done:
            log.warning("slot %s (run %s, job %s %s) closed as %s: %s", r.id, r.run_id, r.job_id, r.job_status,
                        status, error)
            report.slots_closed += 1
            runs.add(r.run_id)
    return runs


def _close_running_calls(report: RecoveryReport) -> None:
    timeout = get_settings().slot_timeout_bound_s
    with session_scope() as s:
        n = s.execute(sa.text("""
            update ai_call c set status = 'failed', error = case
                when x.job_status in ('failed', 'succeeded') then
                    'database unavailable: the worker could not record how this call ended (job ' || x.job_status || ')'
                else 'worker lost: no result recorded (its job is ' || coalesce(x.job_status, 'gone') || ')' end
              from (select c2.id, j.status::text as job_status
                      from ai_call c2 left join procrastinate_jobs j on j.id = c2.job_id
                     where c2.status = 'running' and c2.job_id is not null
                       and (j.id is null or j.status <> 'doing')) x
             where c.id = x.id
        """)).rowcount
        n += s.execute(sa.text("""
            update ai_call set status = 'failed',
                   error = 'worker lost: no result recorded within ' || :label || ' s'
             where status = 'running' and created_at < now() - make_interval(secs => :timeout)
        """), {"timeout": timeout, "label": f"{timeout:g}"}).rowcount
    if n:
        log.warning("closed %d ai_call rows left running", n)
    report.calls_closed += n


def _close_idle_runs(report: RecoveryReport, runs: set[int]) -> None:
    with session_scope() as s:
        idle = s.execute(sa.select(GenerationRun.id).where(
            GenerationRun.status.in_(RUN_ACTIVE),
            ~sa.exists().where(Variation.run_id == GenerationRun.id, Variation.status.in_(ACTIVE_SLOT_STATES)),
        )).scalars().all()
    for run_id in sorted(set(idle) | runs):
        _maybe_finish_run(run_id)
    report.runs_closed += len(idle)


# ---------------------------------------------------------------- files
def _sweep_files(report: RecoveryReport, *, full: bool) -> None:
    """Delete variation files that no committed row points at and no live claim is writing.

    Files are listed before the rows are read: a file that exists was written after its claim
    committed, so the rows read afterwards show that claim (generating) or the finished row."""
    since = datetime.fromtimestamp(time.time() - RECENT_RUNS_S, tz=timezone.utc)
    with session_scope() as s:
        q = sa.select(GenerationRun.id, Character.slug).join(Character, Character.id == GenerationRun.character_id)
        if not full:
            q = q.where(sa.or_(GenerationRun.status.in_(RUN_ACTIVE), GenerationRun.finished_at >= since))
        runs = s.execute(q).all()
    for run_id, slug in runs:
        folder = f"{media.character_dir(slug)}/variations/{run_id}"
        path = media.resolve(folder)
        if not path.is_dir():
            continue
        names = [p.name for p in path.iterdir() if p.is_file()]
        with session_scope() as s:
            rows = s.execute(sa.select(Variation.slot_key, Variation.attempt, Variation.claim, Variation.status,
                                       Variation.path, Variation.thumb_path).where(Variation.run_id == run_id)).all()
        referenced = {p for r in rows for p in (r.path, r.thumb_path) if p}
        writing = {(r.slot_key, r.attempt, r.claim) for r in rows if r.status == "generating"}
        for name in names:
            rel = f"{folder}/{name}"
            if name == "metadata.json" or rel in referenced:
                continue
            if name.startswith(".tmp-"):
                if time.time() - (path / name).stat().st_mtime < TEMP_FILE_GRACE_S:
                    continue
            else:
                parsed = parse_variation_file(name)
                if parsed is None or parsed in writing:
                    continue
            media.remove(rel)
            report.files_removed.append(rel)
            log.warning("removed orphan file %s (no committed row points at it)", rel)


def reconcile(*, full_scan: bool = False) -> RecoveryReport:
    """Steps 2-5 of the module docstring; `full_scan` sweeps the files of every run, not only recent ones."""
    report = RecoveryReport()
    runs = _close_orphaned_slots(report)
    report.slots_closed += close_orphaned_cells()
    _close_running_calls(report)
    _close_idle_runs(report, runs)
    _sweep_files(report, full=full_scan)
    return report


def recover(*, seconds_since_heartbeat: float, full_scan: bool = False) -> RecoveryReport:
    """One recovery pass (what a worker runs at start and every RECOVERY_INTERVAL_S)."""
    requeued = recover_stalled(seconds_since_heartbeat=seconds_since_heartbeat)
    report = reconcile(full_scan=full_scan)
    report.requeued = requeued
    if report:
        log.warning("recovery: %s", report)
    return report
