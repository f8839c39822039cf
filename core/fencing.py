"""Fencing for slot execution: a slot's result is committed only by the job that currently owns it.

`claim_slot` takes a pending slot queued for this job and bumps its `claim` number (the fencing
token). The gate before the provider call (`enter_provider_call`) and the final UPDATE in
core/generation.py both require that number while the slot is still `generating`, so a worker that
was paused past the stall window (and whose slot recovery gave to a new job) neither pays a second
time nor overwrites the newer result. Files are named per claim (`variation_rel_path`), so the
loser never overwrites the winner's image; recovery reads those names back (`parse_variation_file`)
to tell an in-flight file from an orphan.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlalchemy as sa

from core import media
from db.engine import session_scope
from db.models import GenerationRun, Variation, utcnow

log = logging.getLogger(__name__)

_VARIATION_FILE = re.compile(r"^(?P<slot>[a-z0-9_]+)(?:-attempt(?P<attempt>\d+))?(?:-r(?P<claim>\d+))?"
                             r"(?P<thumb>\.thumb)?\.(?P<ext>png|jpe?g|webp)$")


def variation_rel_path(slug: str, run_id: int, slot_key: str, attempt: int, claim: int, ext: str) -> str:
    """Per attempt and per claim: a worker that lost its claim never overwrites the winner's file.
    The first claim of an attempt keeps the plain name (`<slot>.png`, `<slot>-attempt2.png`)."""
    suffix = ("" if attempt == 1 else f"-attempt{attempt}") + ("" if claim <= 1 else f"-r{claim}")
    return f"{media.character_dir(slug)}/variations/{run_id}/{slot_key}{suffix}.{ext}"


def parse_variation_file(name: str) -> tuple[str, int, int] | None:
    """(slot key, attempt, claim) of a file name written by VariationImage; None for anything else."""
    m = _VARIATION_FILE.match(name)
    if m is None:
        return None
    return m["slot"], int(m["attempt"] or 1), int(m["claim"] or 1)


class SlotLost(Exception):
    """The slot was cancelled or claimed by another job before this one reached the provider call."""


def enter_provider_call(*, variation_id: int, claim: int) -> None:
    """The gate before the paid call: only the current claim holder of a still-generating slot passes.

    Under the same row lock as cancel_run and recovery, so a slot cancelled or taken over before this
    point never costs a provider call."""
    with session_scope() as s:
        ok = s.execute(
            sa.update(Variation).where(Variation.id == variation_id, Variation.claim == claim,
                                       Variation.status == "generating")
            .values(provider_called_at=utcnow()).returning(Variation.id)
        ).first()
    if ok is None:
        raise SlotLost(f"slot {variation_id} was cancelled or taken over (claim {claim}) before the provider call; "
                       "nothing was spent")


@dataclass(frozen=True)
class Claim:
    variation_id: int
    job_id: int | None
    claim: int
    run_id: int
    character_id: int
    slot_key: str
    attempt: int
    reasons: list
    override: str | None
    requested_by: str | None = None  # the editor who asked for the run: the Activity log credits them


def claim_slot(*, variation_id: int, job_id: int | None) -> Claim | str:
    """Take a pending slot queued for this job; returns the claim, or the slot's status when not claimable."""
    with session_scope() as s:
        claimed = s.execute(
            sa.update(Variation).where(Variation.id == variation_id, Variation.status == "pending",
                                       sa.or_(Variation.job_id.is_(None), Variation.job_id == job_id)
                                       if job_id is not None else sa.true())
            .values(status="generating", started_at=utcnow(), job_id=job_id, error=None, claim=Variation.claim + 1,
                    provider_called_at=None)
            .returning(Variation.run_id, Variation.character_id, Variation.slot_key, Variation.attempt,
                       Variation.rejection_context, Variation.claim)
        ).first()
        if claimed is None:
            current = s.execute(sa.select(Variation.status).where(Variation.id == variation_id)).scalar()
            log.info("variation %s not claimed by job %s (status %s)", variation_id, job_id, current)
            return current or "missing"
        run_id, character_id, slot_key, attempt, reasons, claim = claimed
        s.execute(sa.update(GenerationRun).where(GenerationRun.id == run_id, GenerationRun.status == "queued")
                  .values(status="running", started_at=utcnow()))
        override, requested_by = s.execute(sa.select(GenerationRun.template_override, GenerationRun.requested_by)
                                           .where(GenerationRun.id == run_id)).one()
    return Claim(variation_id, job_id, claim, run_id, character_id, slot_key, attempt, reasons, override, requested_by)
