"""Procrastinate task definitions, registered on a worker App by `register`."""
from __future__ import annotations

import procrastinate
from procrastinate import JobContext

from core.generation import execute_variation
from core.jobs import GENERATE_SLOT, GENERATION_QUEUE


def generate_slot(context: JobContext, *, variation_id: int) -> str:
    return execute_variation(variation_id=variation_id, job_id=context.job.id)


def register(app: procrastinate.App) -> None:
    app.task(name=GENERATE_SLOT, queue=GENERATION_QUEUE, pass_context=True)(generate_slot)
