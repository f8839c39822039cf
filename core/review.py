"""Reviewing variations: coverage grid, decisions with reason codes, queue, export.

The "latest attempt" of a slot is the variation with the highest id for that
(character, slot); earlier attempts stay for side-by-side comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from core import media
from core.errors import NotFoundError, ValidationError, require
from core.generation import REASON_CODES
from core.shots import shot_list
from core.text import clean_text
from db.engine import session_scope
from db.models import RUN_ACTIVE, Character, GenerationRun, ReferenceImage, Style, Variation, utcnow

NOTE_MAX = 2000


@dataclass(frozen=True)
class Cell:
    variation_id: int
    run_id: int
    slot_key: str
    attempt: int
    status: str
    review_status: str
    thumb_path: str | None
    path: str | None
    error: str | None
    drift_score: float | None


@dataclass(frozen=True)
class CoverageRow:
    character_id: int
    name: str
    slug: str
    style_name: str | None
    cells: dict[str, Cell]


def _latest_subquery(run_id: int | None = None):
    q = sa.select(Variation).distinct(Variation.character_id, Variation.slot_key).order_by(
        Variation.character_id, Variation.slot_key, Variation.id.desc())
    if run_id is not None:
        q = q.where(Variation.run_id == run_id)
    return q.subquery()


def coverage(*, style_id: int | None = None, review_state: str | None = None, run_id: int | None = None,
             search: str = "") -> list[CoverageRow]:
    """Characters × slots with each slot's latest attempt; filters keep characters having a matching cell."""
    latest = _latest_subquery(run_id)
    q = (sa.select(Character.id.label("cid"), Character.name.label("cname"), Character.slug.label("cslug"),
                   Style.name.label("style_name"), latest)
         .join(latest, latest.c.character_id == Character.id)
         .join(Style, Style.id == Character.style_id, isouter=True)
         .where(Character.archived.is_(False))
         .order_by(sa.func.lower(Character.name)))
    if style_id is not None:
        q = q.where(Character.style_id == style_id)
    if search.strip():
        q = q.where(sa.func.lower(Character.name).like(f"%{search.strip().lower()}%"))
    with session_scope() as s:
        rows = s.execute(q).all()
    by_char: dict[int, CoverageRow] = {}
    for r in rows:
        m = r._mapping
        row = by_char.setdefault(m["cid"], CoverageRow(m["cid"], m["cname"], m["cslug"], m["style_name"], {}))
        row.cells[m["slot_key"]] = Cell(m["id"], m["run_id"], m["slot_key"], m["attempt"], m["status"],
                                        m["review_status"], m["thumb_path"], m["path"], m["error"], m["drift_score"])
    out = list(by_char.values())
    if review_state:
        out = [r for r in out if any(c.review_status == review_state and c.status == "completed" for c in r.cells.values())]
    return out


def attempts(*, character_id: int, slot_key: str) -> list[Variation]:
    with session_scope() as s:
        return list(s.execute(sa.select(Variation).where(Variation.character_id == character_id,
                                                         Variation.slot_key == slot_key)
                              .order_by(Variation.id.desc())).scalars())


def get_variation(*, variation_id: int) -> Variation:
    with session_scope() as s:
        v = s.get(Variation, variation_id)
    if v is None:
        raise NotFoundError(f"Variation #{variation_id} does not exist.")
    return v


def _checked_decision(decision: str, reason_codes: list[str] | None, note: str) -> list[str]:
    if decision not in ("approved", "rejected", "unreviewed"):
        raise ValidationError(f"Unknown decision '{decision}'.")
    codes = list(dict.fromkeys(reason_codes or []))
    unknown = [c for c in codes if c not in REASON_CODES]
    if unknown:
        raise ValidationError(f"Unknown reason code(s): {', '.join(unknown)}.")
    if decision == "rejected" and not codes:
        raise ValidationError("Pick at least one reason to reject: it goes into the next attempt's prompt.")
    clean_text(note, field="The note", limit=NOTE_MAX, multiline=True)  # controls, bidi overrides, length
    return codes


def review(*, variation_id: int, decision: str, reviewer: str, reason_codes: list[str] | None = None,
           note: str = "") -> Variation:
    codes = _checked_decision(decision, reason_codes, note)
    with session_scope() as s:
        v = require(s.get(Variation, variation_id), f"Variation #{variation_id} does not exist.")
        if v.status != "completed":
            raise ValidationError(f"Only completed images can be reviewed (this one is {v.status}).")
        v.review_status = decision
        v.reason_codes = codes if decision == "rejected" else []
        v.review_note = note.strip()
        v.reviewed_by, v.reviewed_at = reviewer, utcnow()
        s.add(v)
        s.flush()
        s.refresh(v)
        return v


def bulk_approve(*, variation_ids: list[int], reviewer: str) -> int:
    """Approves the completed, unreviewed ones among `variation_ids`; returns how many."""
    with session_scope() as s:
        res = s.execute(
            sa.update(Variation).where(Variation.id.in_(variation_ids), Variation.status == "completed",
                                       Variation.review_status == "unreviewed")
            .values(review_status="approved", reviewed_by=reviewer, reviewed_at=utcnow(), reason_codes=[])
            .returning(Variation.id))
        return len(res.all())


def bulk_reject(*, variation_ids: list[int], reviewer: str, reason_codes: list[str], note: str = "") -> int:
    """Rejects the completed ones among `variation_ids` with the same reasons; returns how many
    (images still generating or failed are left alone, as a single review would refuse them)."""
    codes = _checked_decision("rejected", reason_codes, note)
    with session_scope() as s:
        res = s.execute(
            sa.update(Variation).where(Variation.id.in_(variation_ids), Variation.status == "completed")
            .values(review_status="rejected", reason_codes=codes, review_note=note.strip(), reviewed_by=reviewer,
                    reviewed_at=utcnow())
            .returning(Variation.id))
        return len(res.all())


QUEUE_ORDERS = {"grid": "Grid order (character, then shot)", "drift": "Most identity drift first"}


def unreviewed_in_order(grid: list[CoverageRow], *, order: str = "grid", off_model_only: bool = False) -> list[int]:
    """Latest completed, unreviewed attempts: the review queue. Grid order walks characters then the shot
    list; drift order puts the likely off-model images first (not yet scored ones last). `off_model_only`
    keeps the ones whose drift is above the calibrated off-model threshold."""
    from core.drift import is_off_model

    cells = [row.cells[slot.key] for row in grid for slot in shot_list()
             if slot.key in row.cells and row.cells[slot.key].status == "completed"
             and row.cells[slot.key].review_status == "unreviewed"]
    if off_model_only:
        cells = [c for c in cells if is_off_model(c.drift_score)]
    if order == "drift":
        cells = sorted(cells, key=lambda c: (c.drift_score is None, -(c.drift_score or 0.0)))
    return [c.variation_id for c in cells]


def drift_label(score: float | None) -> str:
    from core.drift import is_off_model

    if score is None:
        return "identity drift: not scored yet (needs the image embedding and a reference)"
    return f"identity drift {score:.3f}" + (" ⚠️ off-model" if is_off_model(score) else "")


def queue(*, style_id: int | None = None, run_id: int | None = None) -> list[int]:
    return unreviewed_in_order(coverage(style_id=style_id, run_id=run_id))


def avatar_paths(character_ids: list[int]) -> dict[int, str]:
    """Approved portrait_front thumbnail, else the first reference's thumbnail."""
    if not character_ids:
        return {}
    with session_scope() as s:
        approved = s.execute(
            sa.select(Variation.character_id, Variation.thumb_path)
            .where(Variation.character_id.in_(character_ids), Variation.slot_key == "portrait_front",
                   Variation.review_status == "approved")
            .order_by(Variation.character_id, Variation.id.desc()).distinct(Variation.character_id)).all()
        refs = s.execute(
            sa.select(ReferenceImage.character_id, ReferenceImage.thumb_path)
            .where(ReferenceImage.character_id.in_(character_ids))
            .order_by(ReferenceImage.character_id, ReferenceImage.position, ReferenceImage.id)
            .distinct(ReferenceImage.character_id)).all()
    out = {cid: p for cid, p in refs}
    out.update({cid: p for cid, p in approved if p})
    return out


def generation_summary(character_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per character: counts of latest attempts by status and review state."""
    if not character_ids:
        return {}
    latest = _latest_subquery()
    with session_scope() as s:
        rows = s.execute(sa.select(latest.c.character_id, latest.c.status, latest.c.review_status, sa.func.count())
                         .where(latest.c.character_id.in_(character_ids))
                         .group_by(latest.c.character_id, latest.c.status, latest.c.review_status)).all()
        active = set(s.execute(sa.select(GenerationRun.character_id).where(
            GenerationRun.character_id.in_(character_ids), GenerationRun.status.in_(RUN_ACTIVE))).scalars())
    out: dict[int, dict[str, int]] = {}
    for cid, status, review_state, n in rows:
        d = out.setdefault(cid, {})
        d[status] = d.get(status, 0) + n
        if status == "completed":
            d[review_state] = d.get(review_state, 0) + n
    for cid in active:
        out.setdefault(cid, {})["active_run"] = 1
    return out


def export_approved(*, character_ids: list[int] | None = None) -> tuple[bytes, int]:
    """A zip of approved images (latest approved attempt per slot) with manifest.csv and manifest.json."""
    latest_approved = (sa.select(Variation).where(Variation.review_status == "approved")
                       .distinct(Variation.character_id, Variation.slot_key)
                       .order_by(Variation.character_id, Variation.slot_key, Variation.id.desc()).subquery())
    q = (sa.select(Character.slug, Character.name, latest_approved)
         .join(latest_approved, latest_approved.c.character_id == Character.id).order_by(Character.slug))
    if character_ids:
        q = q.where(Character.id.in_(character_ids))
    with session_scope() as s:
        rows = [r._mapping for r in s.execute(q).all()]
    return media.zip_with_manifest([
        (f"{m['slug']}/{m['slot_key']}.{(m['path'] or '').rsplit('.', 1)[-1]}", m["path"], {
            "character": m["name"], "slug": m["slug"], "slot": m["slot_key"], "run_id": m["run_id"],
            "attempt": m["attempt"], "seed": m["seed"], "provider": m["provider"], "model": m["model"],
            "template_version": m["template_version"], "template_layer": m["template_layer"],
            "cost_usd": str(m["cost_usd"] if m["cost_usd"] is not None else Decimal(0)),
            "reviewed_by": m["reviewed_by"], "reviewed_at": m["reviewed_at"].isoformat() if m["reviewed_at"] else None,
            "prompt": m["rendered_prompt"],
        }) for m in rows])
