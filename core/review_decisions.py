"""Review decisions on single images and in bulk: validation, the Decision record that undo restores.

Split from core/review.py (grid, queue, export); core.review re-exports these, so callers keep
`review.decide(...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core.errors import ConflictError, NotFoundError, ValidationError, require
from core.generation import REASON_CODES
from core.shots import slot_by_key
from core.text import clean_text
from db.engine import session_scope
from db.models import Character, Variation, utcnow

NOTE_MAX = 2000


def image_label(*, character_name: str, slot_key: str, attempt: int) -> str:
    """How messages name one image: the editor must be able to tell which one a decision hit."""
    return f"{character_name} · {slot_by_key(slot_key).label} · attempt {attempt}"


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


@dataclass(frozen=True)
class Decision:
    """One review decision and the state it replaced: what the page names in its message and what undo restores."""

    variation_id: int
    label: str
    decision: str
    reviewer: str
    reviewed_at: datetime
    previous: tuple[str, tuple[str, ...], str, str | None, datetime | None]  # status, codes, note, by, at


def decide(*, variation_id: int, decision: str, reviewer: str, reason_codes: list[str] | None = None,
           note: str = "") -> Decision:
    """Approve / reject / reset one image; the returned Decision names the image and can be undone."""
    codes = _checked_decision(decision, reason_codes, note)
    with session_scope() as s:
        v = require(s.get(Variation, variation_id, with_for_update=True), f"Variation #{variation_id} does not exist.")
        if v.status != "completed":
            raise ValidationError(f"Only completed images can be reviewed (this one is {v.status}).")
        previous = (v.review_status, tuple(v.reason_codes), v.review_note, v.reviewed_by, v.reviewed_at)
        v.review_status = decision
        v.reason_codes = codes if decision == "rejected" else []
        v.review_note = note.strip()
        v.reviewed_by, v.reviewed_at = reviewer, utcnow()
        s.add(v)
        s.flush()
        s.refresh(v)
        name = s.execute(sa.select(Character.name).where(Character.id == v.character_id)).scalar_one()
        label = image_label(character_name=name, slot_key=v.slot_key, attempt=v.attempt)
        return Decision(v.id, label, decision, reviewer, v.reviewed_at, previous)


def review(*, variation_id: int, decision: str, reviewer: str, reason_codes: list[str] | None = None,
           note: str = "") -> Variation:
    decide(variation_id=variation_id, decision=decision, reviewer=reviewer, reason_codes=reason_codes, note=note)
    return get_variation(variation_id=variation_id)


def undo(*, decision: Decision) -> Decision:
    """Put the image back the way it was before `decision`, unless someone reviewed it again since (then
    nothing changes: undoing would silently drop their decision)."""
    with session_scope() as s:
        v = require(s.get(Variation, decision.variation_id, with_for_update=True),
                    f"{decision.label} no longer exists; nothing to undo.")
        if (v.review_status, v.reviewed_by, v.reviewed_at) != (decision.decision, decision.reviewer,
                                                               decision.reviewed_at):
            raise ConflictError(f"{decision.label} was reviewed again since ({v.review_status} by {v.reviewed_by}); "
                                "nothing was undone.")
        status, codes, note, by, at = decision.previous
        v.review_status, v.reason_codes, v.review_note, v.reviewed_by, v.reviewed_at = status, list(codes), note, by, at
        s.add(v)
    return decision


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
