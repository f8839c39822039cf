"""Procrastinate tasks. Kept apart from core.generation so importing the
service layer does not register tasks twice or need a job app."""
from __future__ import annotations

from procrastinate import JobContext

from core.generation import execute_variation
from core.jobs import GENERATION_QUEUE, get_app

app = get_app()


@app.task(name="generate_slot", queue=GENERATION_QUEUE, pass_context=True)
def generate_slot(context: JobContext, *, variation_id: int) -> str:
    return execute_variation(variation_id=variation_id, job_id=context.job.id)
