"""The job queue: procrastinate on the workbench's own Postgres.

Two kinds of App per process, on purpose: `get_app()` is opened
synchronously once and used to defer, cancel and retry jobs (web process,
services); `make_worker_app()` builds a fresh App with the tasks registered
for `run_worker`, which opens and closes its own async pool. Sharing one App
would let the worker's shutdown close the connector the web side defers with.
Workers on other machines run `workbench.py worker` against the same
DATABASE_URL.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

import procrastinate

from db.engine import database_url

log = logging.getLogger(__name__)
_lock = threading.Lock()
_app: procrastinate.App | None = None
GENERATION_QUEUE = "generation"
GENERATE_SLOT = "generate_slot"
EMBED_QUEUE = "embeddings"
EMBED_BACKFILL = "embed_backfill"
EMBED_SUBJECTS = "embed_subjects"
EMBED_PENDING = "embed_pending"
EMBED_TASKS = (EMBED_BACKFILL, EMBED_SUBJECTS, EMBED_PENDING)
PROJECTION_QUEUE = "projections"
COMPUTE_PROJECTION = "compute_projection"
SLOT_PRIORITY = 10  # procrastinate fetches higher priorities first; embedding and map jobs keep 0


def libpq_url(sqlalchemy_url: str) -> str:
    return urlparse(sqlalchemy_url)._replace(scheme="postgresql").geturl()


def _connector() -> procrastinate.PsycopgConnector:
    return procrastinate.PsycopgConnector(conninfo=libpq_url(database_url()))


def get_app() -> procrastinate.App:
    """The process's App for deferring and managing jobs, opened on first use."""
    global _app
    with _lock:
        if _app is None:
            _app = procrastinate.App(connector=_connector())
            _app.open()
        return _app


def reset_app() -> None:
    """Close the process's App (tests point the process at another database, like dispose_engine)."""
    global _app
    with _lock:
        if _app is not None:
            _app.close()
        _app = None
@dataclass(frozen=True)
class Lane:
    """A worker loop: the queues it takes jobs from and how many it runs at once."""

    name: str
    queues: tuple[str, ...]
    concurrency: int


def worker_lanes(*, generation_concurrency: int) -> list[Lane]:
    """How one worker process splits its capacity (see workbench.py cmd_worker).

    Slots get their own loop with the generation bound; embedding and map jobs share a second loop that
    runs one job at a time. A slot therefore never waits for a free place behind an embedding backlog or
    a map fit, and CPU-heavy model work never runs ten at once. A new queue must be added to a lane.
    """
    return [Lane("generation", (GENERATION_QUEUE,), max(1, generation_concurrency)),
            Lane("background", (EMBED_QUEUE, PROJECTION_QUEUE), 1)]


def make_worker_app() -> procrastinate.App:
    from core.tasks import register

    app = procrastinate.App(connector=_connector())
    register(app)
    return app


def defer_slots(*, variation_ids: list[int], connection=None) -> list[int]:
    """Queue one job per slot in one statement; returns the job ids in the order of `variation_ids`.

    With `connection` (the psycopg connection of an open SQLAlchemy transaction) the jobs are inserted in
    that transaction: runs, slots and their jobs commit together or not at all. Slot jobs carry a higher
    priority than embedding and map jobs, so even a worker that listens to every queue takes slots first.
    """
    if not variation_ids:
        return []
    app = get_app()
    jobs = [app.configure_task(GENERATE_SLOT, queue=GENERATION_QUEUE, priority=SLOT_PRIORITY,
                               queueing_lock=f"variation-{vid}").make_new_job(variation_id=vid)
            for vid in variation_ids]
    return [job.id for job in app.job_manager.batch_defer_jobs(jobs=jobs, connection=connection)]


def _defer_once(task_name: str, *, queue: str, lock: str, connection=None, **kwargs) -> int | None:
    """Defer a job unless one with the same queueing lock is still waiting (then None: that one will do).

    With `connection` (the psycopg connection of an open SQLAlchemy transaction) the job is inserted in that
    transaction, so it commits with the row and audit entry that asked for it; a clash with a waiting job
    then raises AlreadyEnqueued and the caller must roll its transaction back (Postgres aborted it)."""
    from procrastinate.exceptions import AlreadyEnqueued

    app = get_app()
    deferrer = app.configure_task(task_name, queue=queue, queueing_lock=lock)
    if connection is not None:
        return app.job_manager.defer_job(deferrer.make_new_job(**kwargs), connection=connection).id
    try:
        return deferrer.defer(**kwargs)
    except AlreadyEnqueued:
        return None


def defer_embed_backfill(*, connection=None) -> int | None:
    """Queue one backfill of every type and space; a second request while one is queued is a no-op."""
    return _defer_once(EMBED_BACKFILL, queue=EMBED_QUEUE, lock="embed-backfill", connection=connection)


def defer_embed_pending() -> int | None:
    """Make sure one embed_pending job is waiting; None when one already waits (it will see the new rows)."""
    return _defer_once(EMBED_PENDING, queue=EMBED_QUEUE, lock="embed-pending")


def request_embedding(*, subject_type: str, ids: list[int], spaces: list[str] | None = None) -> int | None:
    """Mark subjects queued and make sure one coalescing embedding job is waiting for them.

    The 'queued' rows of the embedding table are the pending set: one `embed_pending` job embeds all of
    them in batches. While that job waits, more requests only add rows (its queueing lock makes the defer
    a no-op), so 3,000 finished slots cost a handful of jobs, not 3,000 model calls. `spaces` narrows
    which spaces are marked (a page's per-space action); None marks every space of the type.

    The save that triggers this has already committed: if the queue is unreachable the subjects stay
    'queued' on the status page and the next backfill picks them up, so the error is logged, not raised.
    """
    from core.vectors.embeddings import mark_queued

    if not ids:
        return None
    try:
        mark_queued(subject_type=subject_type, ids=ids, spaces=spaces)
        return defer_embed_pending()
    except Exception as err:
        log.error("could not queue embedding of %s %s (the backfill will catch up): %s", subject_type, ids[:20], err)
        return None


def retry_stalled_job(*, job_id: int) -> bool:
    """Put a dead worker's job back in the queue; False when a waiting job already holds its queueing lock.

    That happens to `embed_pending` (a new request deferred a successor while the dead one was running):
    the successor reads the same pending set, so the stalled job is marked failed instead of retried.
    """
    from datetime import datetime, timezone

    from procrastinate.exceptions import UniqueViolation

    app = get_app()
    try:
        app.job_manager.retry_job_by_id(job_id=job_id, retry_at=datetime.now(timezone.utc))
        return True
    except UniqueViolation:
        log.warning("stalled job %s not retried: a waiting job with its queueing lock will do its work", job_id)
        app.connector.get_sync_connector().execute_query(
            query="update procrastinate_jobs set status = 'failed' where id = %(id)s and status = 'doing'", id=job_id)
        return False


def pending_jobs(*task_names: str, args: dict[str, str] | None = None) -> int:
    """Jobs of these tasks waiting or running (those whose arguments contain `args`, when given):
    pages use it to keep a live view refreshing."""
    import json

    import sqlalchemy as sa

    from db.engine import session_scope

    with session_scope() as s:
        return s.execute(sa.text("select count(*) from procrastinate_jobs where task_name = any(:t) "
                                 "and status in ('todo', 'doing') and args @> cast(:a as jsonb)"),
                         {"t": list(task_names), "a": json.dumps(args or {})}).scalar_one()


def defer_projection(*, projection_id: int, space: str, subject_type: str, mode: str = "fit",
                     connection=None) -> int | None:
    """Queue a map fit ("fit") or placement of new points ("place") for one (space, subject_type) set.

    One queueing lock per set: while a job for the set waits, a second request is a no-op (None), or
    AlreadyEnqueued inside the caller's transaction (`connection`, see _defer_once).
    """
    return _defer_once(COMPUTE_PROJECTION, queue=PROJECTION_QUEUE, lock=f"projection-{space}-{subject_type}",
                       connection=connection, projection_id=projection_id, space=space, subject_type=subject_type,
                       mode=mode)
