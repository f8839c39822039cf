"""Procrastinate task definitions (generation slots, embedding backfill), registered on a worker App.

The task is async and hands the (blocking) slot work to our own thread pool
sized to the generation bound: procrastinate's default path for sync tasks
uses the event loop's default executor, which has only cpu_count + 4 threads
(6 on a 2-core machine) and would cap a ten-slot run at six in flight.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import procrastinate
from procrastinate import JobContext

from core.generation import execute_variation
from core.jobs import EMBED_BACKFILL, EMBED_PENDING, EMBED_QUEUE, EMBED_SUBJECTS, GENERATE_SLOT, GENERATION_QUEUE
from core.settings import get_settings

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _slot_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=max(1, get_settings().generation_concurrency),
                                           thread_name_prefix="slot")
        return _executor


_in_flight: set[int] = set()


def in_flight_slot_jobs() -> list[int]:
    """Slot jobs this process is running now: a stopping worker hands them over when its time is up."""
    with _lock:
        return sorted(_in_flight)


async def generate_slot(context: JobContext, *, variation_id: int) -> str:
    loop = asyncio.get_running_loop()
    job_id = context.job.id
    work = functools.partial(execute_variation, variation_id=variation_id, job_id=job_id)
    with _lock:
        _in_flight.add(job_id)
    try:
        return await loop.run_in_executor(_slot_executor(), work)
    finally:
        with _lock:
            _in_flight.discard(job_id)


async def generate_experiment_cell(context: JobContext, *, cell_id: int) -> str:
    """One prompt-experiment cell, on the same slot pool (and so the same bound) as run slots."""
    from core.experiment_cells import execute_cell

    loop = asyncio.get_running_loop()
    work = functools.partial(execute_cell, cell_id=cell_id, job_id=context.job.id)
    return await loop.run_in_executor(_slot_executor(), work)


def embed_backfill() -> dict:
    """Embed everything missing, stale or failed; unchanged subjects cost no model call."""
    from core.vectors import embeddings

    return embeddings.backfill().__dict__


def embed_subjects(*, subject_type: str, ids: list[int], spaces: list[str] | None = None) -> dict:
    from core.vectors import embeddings

    return embeddings.embed_subjects(subject_type=subject_type, ids=ids, spaces=spaces).__dict__


def embed_pending() -> dict:
    """Embed every subject waiting in the pending set (see core.jobs.request_embedding)."""
    from core import jobs
    from core.vectors import embeddings

    report, more = embeddings.embed_pending()
    if more:
        jobs.defer_embed_pending()
    return report.__dict__


def register(app: procrastinate.App) -> None:
    app.task(name=GENERATE_SLOT, queue=GENERATION_QUEUE, pass_context=True)(generate_slot)
    from core.experiments import GENERATE_CELL

    app.task(name=GENERATE_CELL, queue=GENERATION_QUEUE, pass_context=True)(generate_experiment_cell)
    app.task(name=EMBED_BACKFILL, queue=EMBED_QUEUE)(embed_backfill)
    app.task(name=EMBED_SUBJECTS, queue=EMBED_QUEUE)(embed_subjects)
    app.task(name=EMBED_PENDING, queue=EMBED_QUEUE)(embed_pending)
    from core.jobs import COMPUTE_PROJECTION, PROJECTION_QUEUE

    app.task(name=COMPUTE_PROJECTION, queue=PROJECTION_QUEUE)(compute_projection)


def compute_projection(*, projection_id: int, space: str, subject_type: str, mode: str = "fit") -> dict:
    """Fit a map (UMAP, or a fallback for tiny sets) or place new points on one; never in a page rerun.

    `space` and `subject_type` are in the arguments so pages can tell which set a queued job is for.
    Sync task: procrastinate runs it in a thread, and numba releases the GIL in UMAP's hot loops.
    """
    from core.vectors import projection

    if mode == "place":
        return projection.run_place(projection_id=projection_id)
    return projection.run_fit(projection_id=projection_id)
