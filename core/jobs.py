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
EMBED_TASKS = (EMBED_BACKFILL, EMBED_SUBJECTS)


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


def make_worker_app() -> procrastinate.App:
    from core.tasks import register

    app = procrastinate.App(connector=_connector())
    register(app)
    return app


def defer_slot(*, variation_id: int) -> int:
    return get_app().configure_task(
        GENERATE_SLOT, queue=GENERATION_QUEUE, queueing_lock=f"variation-{variation_id}"
    ).defer(variation_id=variation_id)


def defer_embed_backfill() -> int | None:
    """Queue one backfill of every type and space; a second request while one is queued is a no-op."""
    from procrastinate.exceptions import AlreadyEnqueued

    try:
        return get_app().configure_task(EMBED_BACKFILL, queue=EMBED_QUEUE, queueing_lock="embed-backfill").defer()
    except AlreadyEnqueued:
        return None


def request_embedding(*, subject_type: str, ids: list[int], spaces: list[str] | None = None) -> int | None:
    """Mark subjects queued and defer their embedding job (after a save, an upload or a finished slot).

    The save that triggers this has already committed: if the queue is unreachable the subjects stay
    'queued' on the status page and the next backfill picks them up, so the error is logged, not raised.
    """
    from core.embeddings import mark_queued

    if not ids:
        return None
    try:
        mark_queued(subject_type=subject_type, ids=ids)
        return get_app().configure_task(EMBED_SUBJECTS, queue=EMBED_QUEUE).defer(
            subject_type=subject_type, ids=sorted(set(ids)), spaces=spaces)
    except Exception as err:
        log.error("could not queue embedding of %s %s (the backfill will catch up): %s", subject_type, ids[:20], err)
        return None


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


PROJECTION_QUEUE = "projections"
COMPUTE_PROJECTION = "compute_projection"


def defer_projection(*, projection_id: int, space: str, subject_type: str, mode: str = "fit") -> int | None:
    """Queue a map fit ("fit") or placement of new points ("place") for one (space, subject_type) set.

    One queueing lock per set: while a job for the set waits, a second request is a no-op (None).
    """
    from procrastinate.exceptions import AlreadyEnqueued

    try:
        return get_app().configure_task(COMPUTE_PROJECTION, queue=PROJECTION_QUEUE,
                                        queueing_lock=f"projection-{space}-{subject_type}").defer(
            projection_id=projection_id, space=space, subject_type=subject_type, mode=mode)
    except AlreadyEnqueued:
        return None
