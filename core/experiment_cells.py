"""Executing prompt-experiment cells, fenced like run slots (core/fencing.py).

A cell is claimed with a fencing number (`claim`, bumped by every claim); the gate before
the paid provider call and the final UPDATE both require that number while the cell is
still `generating`. A worker that was paused past the stall window, whose cell recovery
put back to `pending` and another job finished, therefore neither pays a second time nor
overwrites the newer image: it stops at the gate, or its late result is discarded (files
removed, logged). Files are named per claim, so the loser never overwrites the winner.
Recovery (core/recovery.py) also closes cells whose job ended without a result.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from core import media
from core.ai import ai_engine
from core.fencing import SlotLost
from core.generation import VariationImage
from core.ai.providers import get_provider
from db.engine import session_scope
from db.models import utcnow
from db.models_experiments import Experiment, ExperimentCell

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellClaim:
    cell_id: int
    job_id: int | None
    claim: int
    experiment_id: int
    arm: int
    character_id: int
    slot_key: str
    attempt: int
    body: str


class ExperimentImage(VariationImage):
    """The slot image path of a run, stored as an experiment cell (never a variation)."""

    name = "experiment_image"
    subject_type = "experiment_cell"

    def call(self, rc: ai_engine.RunContext):
        rc.extra["before_attempt"] = functools.partial(enter_cell_call, cell_id=rc.inputs["subject_id"],
                                                       claim=rc.inputs["cell_claim"])
        return super(VariationImage, self).call(rc)

    def rel_path(self, rc: ai_engine.RunContext, ext: str) -> str:
        i = rc.inputs
        claim = "" if i["cell_claim"] <= 1 else f"-r{i['cell_claim']}"
        return (f"experiments/{i['experiment_id']}/{i['character_id']}-{i['slot_key']}-arm{i['arm']}"
                f"-a{i['attempt']}{claim}.{ext}")


EXPERIMENT_IMAGE = ExperimentImage()


def claim_cell(*, cell_id: int, job_id: int | None) -> CellClaim | str:
    """Take a pending cell and bump its fencing number; returns the claim, or the cell's status."""
    with session_scope() as s:
        row = s.execute(
            sa.update(ExperimentCell).where(ExperimentCell.id == cell_id, ExperimentCell.status == "pending")
            .values(status="generating", started_at=utcnow(), job_id=job_id, error=None,
                    claim=ExperimentCell.claim + 1)
            .returning(ExperimentCell.claim, ExperimentCell.experiment_id, ExperimentCell.arm,
                       ExperimentCell.character_id, ExperimentCell.slot_key, ExperimentCell.attempt)
        ).first()
        if row is None:
            current = s.execute(sa.select(ExperimentCell.status).where(ExperimentCell.id == cell_id)).scalar()
            log.info("experiment cell %s not claimed (status %s)", cell_id, current)
            return current or "missing"
        claim, exp_id, arm, character_id, slot_key, attempt = row
        body = s.get(Experiment, exp_id).arms[arm]["body"]
    return CellClaim(cell_id, job_id, claim, exp_id, arm, character_id, slot_key, attempt, body)


def _mine(c: CellClaim):
    return sa.and_(ExperimentCell.id == c.cell_id, ExperimentCell.claim == c.claim,
                   ExperimentCell.status == "generating")


def enter_cell_call(*, cell_id: int, claim: int) -> None:
    """The gate before the paid call: only the current holder of a still-generating cell passes."""
    with session_scope() as s:
        ok = s.execute(sa.select(ExperimentCell.id).where(
            ExperimentCell.id == cell_id, ExperimentCell.claim == claim, ExperimentCell.status == "generating"
        ).with_for_update()).first()
    if ok is None:
        raise SlotLost(f"experiment cell {cell_id} was cancelled or taken over (claim {claim}) before the "
                       "provider call; nothing was spent")


def execute_cell(*, cell_id: int, job_id: int | None = None) -> str:
    """Run one cell through the engine with its arm's body as override (safe to call twice: fenced)."""
    claimed = claim_cell(cell_id=cell_id, job_id=job_id)
    return claimed if isinstance(claimed, str) else run_claimed_cell(claimed)


def run_claimed_cell(c: CellClaim) -> str:
    """Provider call behind the gate, then the fenced commit; a late loser's files are removed."""
    try:
        out = ai_engine.run(
            EXPERIMENT_IMAGE, requested_by="worker", override=c.body, provider=get_provider(), job_id=c.job_id,
            inputs={"character_id": c.character_id, "slot_key": c.slot_key, "experiment_id": c.experiment_id,
                    "arm": c.arm, "attempt": c.attempt, "rejection_reasons": [], "subject_id": c.cell_id,
                    "cell_claim": c.claim},
        )
    except SlotLost as err:
        log.info("experiment cell %s stopped before the provider call: %s", c.cell_id, err)
        return "lost"
    except Exception as err:  # a failed cell records its message; the other cells go on
        log.warning("experiment %s cell %s (%s, arm %s) failed: %s", c.experiment_id, c.cell_id, c.slot_key,
                    c.arm, err)
        with session_scope() as s:
            s.execute(sa.update(ExperimentCell).where(_mine(c)).values(
                status="failed", error=str(err) or err.__class__.__name__, finished_at=utcnow()))
        return "failed"
    files = (out.value["path"], out.value["thumb_path"])
    try:
        with session_scope() as s:
            done = s.execute(sa.update(ExperimentCell).where(_mine(c)).values(
                status="completed", path=files[0], thumb_path=files[1], finished_at=utcnow(),
                rendered_prompt=out.prompt, provider=out.provider, model=out.model, cost_usd=out.cost_usd,
                duration_ms=out.duration_ms, ai_call_id=out.call_id)).rowcount
    except BaseException:
        media.remove(*files)
        raise
    if not done:
        media.remove(*files)
        log.warning("experiment cell %s: result of claim %s discarded (the cell was taken over or cancelled "
                    "meanwhile); files removed", c.cell_id, c.claim)
        return "discarded"
    try:
        _score_drift(cell_id=c.cell_id, character_id=c.character_id, path=files[0])
    except (OSError, ValueError, RuntimeError, sa.exc.SQLAlchemyError) as err:  # a missing score must not fail an image
        log.warning("drift of experiment cell %s not scored: %s", c.cell_id, err)
    return "completed"


def requeue_stalled_cell(*, cell_id: int) -> None:
    """Called by stalled-job recovery: a cell whose worker went silent goes back to pending (its job is
    retried). The retried job's claim bumps the fencing number, so the silent worker is fenced out."""
    with session_scope() as s:
        s.execute(sa.update(ExperimentCell).where(ExperimentCell.id == cell_id, ExperimentCell.status == "generating")
                  .values(status="pending", error="worker stopped; retried"))


def close_orphaned_cells() -> int:
    """Cells still pending/generating whose job ended (failed, succeeded, cancelled, aborted) or vanished
    never get a result: close them (fenced on status, claim and job) so "Re-run failed" picks them up."""
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select c.id, c.status, c.claim, c.job_id, j.status::text as job_status
              from experiment_cell c left join procrastinate_jobs j on j.id = c.job_id
             where c.status in ('pending', 'generating') and c.job_id is not null
               and (j.id is null or j.status not in ('todo', 'doing'))
        """)).all()
    closed = 0
    for r in rows:
        status = "cancelled" if r.job_status == "cancelled" else "failed"
        error = ("cancelled (its job was cancelled)" if status == "cancelled" else
                 f"interrupted: its job {'disappeared' if r.job_status is None else 'ended as ' + repr(r.job_status)}"
                 " before the result was saved (worker lost or database unavailable); re-run failed cells")
        with session_scope() as s:
            closed += s.execute(sa.update(ExperimentCell).where(
                ExperimentCell.id == r.id, ExperimentCell.status == r.status, ExperimentCell.claim == r.claim,
                ExperimentCell.job_id == r.job_id).values(status=status, error=error, finished_at=utcnow())).rowcount
    if closed:
        log.warning("closed %d experiment cells whose job ended without a result", closed)
    return closed


def _score_drift(*, cell_id: int, character_id: int, path: str) -> None:
    """Identity drift as core/drift measures it for variations: cosine distance of the image's embedding
    in the visual image space from the mean embedding of the character's reference images (none: no score)."""
    from core.vectors.embedding_spaces import dims_of, get_embedder, image_space

    space = image_space()
    with session_scope() as s:  # no embedded reference: no score, and no model run for nothing
        has_refs = s.execute(sa.text("""
            select exists(select 1 from embedding e join reference_image r on r.id = e.subject_id
                          where e.subject_type = 'reference' and e.space = :s and e.vector is not null
                            and r.character_id = :cid)"""), {"s": space, "cid": character_id}).scalar_one()
    if not has_refs:
        return
    vector = get_embedder(space).embed_images([media.resolve(path)])[0]
    vec = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
    d = dims_of(space)
    with session_scope() as s:
        s.execute(sa.text(f"""
            update experiment_cell set drift = round(cast(cosine_distance(cast(:v as vector({d})), a.c) as numeric), 4)
            from (select avg(e.vector::vector({d})) as c from embedding e
                  join reference_image r on r.id = e.subject_id
                  where e.subject_type = 'reference' and e.space = :s and e.vector is not null
                    and r.character_id = :cid) a
            where experiment_cell.id = :id and a.c is not null
        """), {"v": vec, "s": space, "cid": character_id, "id": cell_id})
