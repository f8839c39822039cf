"""Generation runs: ten slots per character, executed as background jobs.

Requesting a run writes the run and its ten pending variation rows in one
transaction, then defers one job per slot. A partial unique index allows one
active run per character, so a double click (or two editors) gets the same
run back instead of duplicate slots. Workers execute slots in parallel;
one failing slot never affects the others; the last slot to finish closes the
run and writes its metadata.json.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from core import media
from core.ai import ai_engine
from core.ai.ai_functions import SlotImage
from core.errors import NotFoundError, ValidationError, require
from core.run_metadata import run_metadata
from core.run_status import RunStatus, _latest_attempts, run_status, runs_for_character  # noqa: F401 (callers use generation.*)
from core.fencing import Claim, SlotLost, claim_slot, enter_provider_call, variation_rel_path
from core.media.images import make_thumbnail
from core.ai.providers import get_provider
from core.settings import get_settings
from core.shots import shot_list, slot_by_key
from core.team.access import authorize
from core.team.audit import record
from db.engine import session_scope
from db.models import RUN_ACTIVE, Character, GenerationRun, Variation, utcnow

log = logging.getLogger(__name__)

REASON_CODES: dict[str, str] = {
    "off_model_face": "off-model face",
    "wrong_outfit": "wrong outfit",
    "anatomy": "anatomy problems",
    "style_drift": "style drift",
    "artifact": "visual artifacts",
    "duplicate": "near-duplicate of another image",
    "other": "other",
}
ACTIVE_SLOT_STATES = ("pending", "generating")


@dataclass(frozen=True)
class RunRequest:
    run_id: int
    created: bool  # False when an active run already existed (idempotent re-request)
    character_name: str


class VariationImage(SlotImage):
    """The slot image of a run: same prompt building as 'try it', stored as a variation."""

    name = "variation_image"
    subject_type = "variation"

    def call(self, rc: ai_engine.RunContext):
        # fenced (core/fencing.py): the gate runs before every provider attempt, retries included
        rc.extra["before_attempt"] = functools.partial(enter_provider_call, variation_id=rc.inputs["subject_id"],
                                                       claim=rc.inputs["claim"])
        return super().call(rc)

    def rel_path(self, rc: ai_engine.RunContext, ext: str) -> str:
        """Where the image goes; experiments override this to keep their images out of the variations."""
        slug = rc.variables["character"]["slug"]
        return variation_rel_path(slug, rc.inputs["run_id"], rc.inputs["slot_key"], rc.inputs["attempt"],
                                  rc.inputs["claim"], ext)

    def save(self, rc: ai_engine.RunContext, parsed) -> tuple[dict[str, Any], dict[str, Any]]:
        rel = self.rel_path(rc, rc.extra["image_info"].extension)
        thumb = rel.rsplit(".", 1)[0] + ".thumb.webp"
        media.write_atomic(rel, parsed.data)
        try:
            media.write_atomic(thumb, make_thumbnail(parsed.data, size=get_settings().thumbnail_size))
        except BaseException:
            media.remove(rel)
            raise
        out = {"path": rel, "thumb_path": thumb, "seed_used": parsed.seed_used}
        return out, out


VARIATION_IMAGE = VariationImage()


# ---------------------------------------------------------------- requesting
def _defer(variation_ids: list[int], s=None) -> None:
    """Queue one job per slot in one statement and record the job ids (for cancel and recovery).

    With an open session `s` the jobs are inserted in its transaction, so slots never exist without jobs.
    """
    from core.jobs import defer_slots

    if not variation_ids:
        return
    if s is None:
        with session_scope() as s2:
            return _defer(variation_ids, s2)
    job_ids = defer_slots(variation_ids=variation_ids, connection=s.connection().connection.driver_connection)
    s.execute(sa.text("update variation set job_id = j.job_id from unnest(cast(:v as int[]), cast(:j as bigint[])) "
                      "as j(vid, job_id) where variation.id = j.vid"), {"v": variation_ids, "j": job_ids})


def request_run(*, character_id: int, requested_by: str, template_override: str | None = None) -> RunRequest:
    """Queue a ten-slot run for one character, or return its active run (one active run per character)."""
    if template_override:
        from core.ai.ai_functions import build_slot_prompt

        with session_scope() as s:  # the role first: a viewer hears that, not what is wrong with the template
            authorize(s, who=requested_by, action="generation.request")
        build_slot_prompt(character_id=character_id, slot_key=shot_list()[0].key, override=template_override)
    result = _request_many([character_id], requested_by=requested_by, template_override=template_override)[0]
    if isinstance(result, Exception):
        raise result
    return result


def request_runs(*, character_ids: list[int], requested_by: str) -> list[RunRequest | ValidationError]:
    """Several characters at once; one refusal (archived, say) does not stop the others.

    Any number of characters costs a few statements in one transaction (runs, slots and their jobs are
    inserted in batches), so "Generate for all shown" returns at once instead of one round trip per slot.
    """
    return [ValidationError(str(r)) if isinstance(r, Exception) else r
            for r in _request_many(character_ids, requested_by=requested_by)]


def _request_many(character_ids: list[int], *, requested_by: str,
                  template_override: str | None = None) -> list[RunRequest | ValidationError | NotFoundError]:
    """Runs for many characters in one transaction; a character that already has an active run gets it back.

    A concurrent request can win the race for a character between our check and our insert (the partial
    unique index refuses the second active run): the transaction is then retried and finds that run.
    """
    for attempt in range(3):
        try:
            return _request_many_once(character_ids, requested_by, template_override)
        except IntegrityError as err:
            log.info("run request raced another request (attempt %d), retrying: %s", attempt + 1, err.orig)
    return _request_many_once(character_ids, requested_by, template_override)


def _request_many_once(character_ids: list[int], requested_by: str,
                       template_override: str | None) -> list[RunRequest | ValidationError | NotFoundError]:
    wanted = list(dict.fromkeys(character_ids))
    slots = shot_list()
    provider = get_settings().provider_name
    with session_scope() as s:
        role = authorize(s, who=requested_by, action="generation.request")  # before any run, slot or job
        chars = {c.id: c for c in s.execute(sa.select(Character.id, Character.name, Character.archived,
                                                      Character.base_seed).where(Character.id.in_(wanted))).all()}
        active = dict(s.execute(sa.select(GenerationRun.character_id, GenerationRun.id).where(
            GenerationRun.character_id.in_(wanted), GenerationRun.status.in_(RUN_ACTIVE))).all())
        new_cids = [cid for cid in wanted if cid in chars and not chars[cid].archived and cid not in active]
        created: dict[int, int] = {}
        if new_cids:  # core inserts with RETURNING: one batched statement each, no ORM object per slot
            created = dict(s.execute(
                sa.insert(GenerationRun).returning(GenerationRun.character_id, GenerationRun.id,
                                                   sort_by_parameter_order=True),
                [{"character_id": cid, "requested_by": requested_by, "provider": provider,
                  "template_override": template_override or None} for cid in new_cids]).all())
            vids = s.execute(
                sa.insert(Variation).returning(Variation.id, sort_by_parameter_order=True),
                [{"run_id": created[cid], "character_id": cid, "slot_key": slot.key, "provider": provider,
                  "seed": chars[cid].base_seed + slot.seed_offset} for cid in new_cids for slot in slots]).scalars().all()
            _defer(list(vids), s)
            for cid in new_cids:  # one audit row per run created; an active run handed back wrote nothing
                record(s, who=requested_by, role=role, action="generation.request", entity="run",
                       entity_id=created[cid], label=chars[cid].name,
                       after={"character_id": cid, "status": "queued", "slots": len(slots),
                              "template_override": bool(template_override)})
    out: list[RunRequest | ValidationError | NotFoundError] = []
    for cid in character_ids:
        ch = chars.get(cid)
        if ch is None:
            out.append(NotFoundError(f"Character #{cid} does not exist (it may have been deleted)."))
        elif ch.archived:
            out.append(ValidationError(f"'{ch.name}' is archived; restore it before generating variations."))
        elif cid in active:
            out.append(RunRequest(active[cid], False, ch.name))
        else:
            out.append(RunRequest(created[cid], True, ch.name))
            active[cid] = created[cid]  # the same id again in this request gets this run back, as not created
    return out


def regenerate(*, run_id: int, requested_by: str, slot_keys: list[str] | None = None, failed_only: bool = False) -> list[int]:
    """New attempts for chosen slots (or only the failed ones); completed attempts stay for comparison.

    Rejection reasons and the note of the attempt being replaced go into the
    next prompt (template variable `rejection_reasons`).
    """
    with session_scope() as s:
        role = authorize(s, who=requested_by, action="generation.regenerate")
        # Two editors clicking "retry failed slots" at once: the second waits here, then sees the first's new
        # attempts (pending) and is told so, instead of inserting the same attempt numbers (IntegrityError).
        s.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": 7_000_000 + run_id})
        run = require(s.get(GenerationRun, run_id), f"Run #{run_id} does not exist.")
        ch = s.get(Character, run.character_id)
        if ch.archived:
            raise ValidationError(f"'{ch.name}' is archived; restore it before generating variations.")
        latest = _latest_attempts(s, run_id)
        if failed_only:
            keys = [k for k, v in latest.items() if v.status in ("failed", "cancelled")]
            if not keys and any(v.status in ACTIVE_SLOT_STATES for v in latest.values()):
                raise ValidationError("Nothing to retry: the failed slots were already queued again (by someone "
                                      "else a moment ago?) and are generating now.")
        else:
            keys = list(slot_keys or latest)
        for k in keys:
            slot_by_key(k)
        busy = [k for k in keys if latest.get(k) is not None and latest[k].status in ACTIVE_SLOT_STATES]
        if busy:
            raise ValidationError(f"Still generating: {', '.join(busy)}. Wait for them or cancel the run first.")
        new_rows = []
        for k in keys:
            prev = latest.get(k)
            reasons = [REASON_CODES.get(c, c) for c in (prev.reason_codes if prev else [])]
            if prev is not None and prev.review_note:
                reasons.append(prev.review_note)
            new_rows.append(Variation(
                run_id=run_id, character_id=run.character_id, slot_key=k, attempt=(prev.attempt + 1) if prev else 1,
                seed=ch.base_seed + slot_by_key(k).seed_offset, provider=get_settings().provider_name,
                rejection_context=reasons,
            ))
        if not new_rows:
            return []
        was = run.status
        s.add_all(new_rows)
        run.status, run.finished_at = "running", None
        s.add(run)
        s.flush()
        vids = [v.id for v in new_rows]
        record(s, who=requested_by, role=role, action="generation.regenerate", entity="run", entity_id=run_id,
               label=ch.name, before={"status": was, "character_id": run.character_id},
               after={"status": "running", "character_id": run.character_id, "regenerated": keys})
    _defer(vids)
    return vids


def cancel_run(*, run_id: int, requested_by: str) -> int:
    """Cancel every slot that has not reached the provider call: pending ones (their jobs too) and claimed
    ones still preparing (the worker's gate before the call then refuses). Slots already waiting on the
    provider finish and are kept: that call is paid for either way. One audit row names the slots stopped."""
    from core.jobs import get_app

    with session_scope() as s:
        role = authorize(s, who=requested_by, action="generation.cancel")
        run = require(s.get(GenerationRun, run_id), f"Run #{run_id} does not exist.")
        rows = s.execute(
            sa.update(Variation).where(
                Variation.run_id == run_id,
                sa.or_(Variation.status == "pending",
                       sa.and_(Variation.status == "generating", Variation.provider_called_at.is_(None))))
            .values(status="cancelled", error="cancelled by editor", finished_at=utcnow())
            .returning(Variation.job_id, Variation.slot_key)
        ).all()
        stopped = [job_id for job_id, _ in rows]
        if rows:  # nothing left to stop wrote nothing
            name = s.execute(sa.select(Character.name).where(Character.id == run.character_id)).scalar_one()
            record(s, who=requested_by, role=role, action="generation.cancel", entity="run", entity_id=run_id,
                   label=name, before={"status": run.status, "character_id": run.character_id},
                   after={"status": "cancelled", "character_id": run.character_id,
                          "cancelled_slots": sorted(k for _, k in rows)})
    manager = get_app().job_manager
    for job_id in stopped:
        if job_id is not None:
            manager.cancel_job_by_id(job_id)  # a job already running ends at the gate
    _maybe_finish_run(run_id, cancelled=True)
    return len(stopped)


# ---------------------------------------------------------------- executing
def execute_variation(*, variation_id: int, job_id: int | None = None) -> str:
    """Run one slot and return its final status (or "lost" / "discarded" when another job owns it now).

    Safe to call twice and fenced: the claim takes a pending slot queued for this job and bumps its
    `claim` number; the gate before the provider call and the final UPDATE both require that number, so
    a worker that was paused while recovery handed the slot to another job neither pays a second time
    (it stops at the gate) nor overwrites the newer result (its UPDATE matches nothing and its files,
    named per claim, are deleted).
    """
    claimed = claim_slot(variation_id=variation_id, job_id=job_id)
    return claimed if isinstance(claimed, str) else run_claimed(claimed)


def run_claimed(c: Claim) -> str:
    """The claimed part of execute_variation: provider call behind the gate, fenced commit."""
    variation_id, job_id, claim, run_id, slot_key = c.variation_id, c.job_id, c.claim, c.run_id, c.slot_key
    override, character_id, attempt, reasons = c.override, c.character_id, c.attempt, c.reasons
    requested_by = c.requested_by
    mine = sa.and_(Variation.id == variation_id, Variation.claim == claim, Variation.status == "generating")
    try:
        out = ai_engine.run(
            # action=None: internal, authorized when the run was requested; the Activity log credits the editor
            VARIATION_IMAGE, requested_by=requested_by or "worker", action=None,
            override=override, provider=get_provider(), job_id=job_id,
            inputs={"character_id": character_id, "slot_key": slot_key, "run_id": run_id, "attempt": attempt,
                    "rejection_reasons": reasons, "subject_id": variation_id, "claim": claim},
        )
    except SlotLost as err:
        log.info("slot %s of run %s stopped before the provider call: %s", slot_key, run_id, err)
        _maybe_finish_run(run_id)
        return "lost"
    except Exception as err:  # every failure becomes a failed slot with its message; the others go on
        log.warning("slot %s of run %s failed: %s", slot_key, run_id, err)
        with session_scope() as s:
            s.execute(sa.update(Variation).where(mine).values(
                status="failed", error=str(err) or err.__class__.__name__, finished_at=utcnow()))
        _maybe_finish_run(run_id)
        return "failed"
    files = (out.value["path"], out.value["thumb_path"])
    # If this UPDATE raises (database gone mid-commit) the outcome is unknown: the files stay, and
    # recovery deletes them unless a committed row points at them.
    with session_scope() as s:
        won = s.execute(sa.update(Variation).where(mine).values(
            status="completed", path=files[0], thumb_path=files[1], finished_at=utcnow(),
            rendered_prompt=out.prompt, template_version=out.template.version if out.template else None,
            template_layer=out.template.layer if out.template else None, provider=out.provider, model=out.model,
            cost_usd=out.cost_usd, ai_call_id=out.call_id,
        ).returning(Variation.id)).first()
    if won is None:
        media.remove(*files)
        log.warning("slot %s of run %s: claim %s was superseded (cancelled or taken over while this worker was "
                    "paused); result of ai_call %s discarded", slot_key, run_id, claim, out.call_id)
        return "discarded"
    _maybe_finish_run(run_id)
    from core import jobs

    jobs.request_embedding(subject_type="variation", ids=[variation_id])  # pixels, prompt text, drift
    return "completed"


def _maybe_finish_run(run_id: int, *, cancelled: bool = False) -> None:
    """Close the run when no slot is pending or generating, and write metadata.json."""
    with session_scope() as s:
        s.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": 7_000_000 + run_id})
        run = s.get(GenerationRun, run_id)
        latest = _latest_attempts(s, run_id)
        states = [v.status for v in latest.values()]
        if any(st in ACTIVE_SLOT_STATES for st in states):
            return
        if cancelled or "cancelled" in states:
            status = "cancelled"
        elif all(st == "completed" for st in states):
            status = "completed"
        elif "completed" in states:
            status = "partial"
        else:
            status = "failed"
        run.status, run.finished_at = status, utcnow()
        s.add(run)
        ch = s.get(Character, run.character_id)
        all_rows = s.execute(sa.select(Variation).where(Variation.run_id == run_id).order_by(Variation.id)).scalars().all()
        meta = run_metadata(run=run, character=ch, rows=all_rows)
        slug = ch.slug
    try:
        media.write_atomic(f"{media.character_dir(slug)}/variations/{run_id}/metadata.json",
                           json.dumps(meta, indent=2).encode())
    except OSError as err:
        log.error("could not write metadata.json for run %s: %s", run_id, err)
