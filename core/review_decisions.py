"""Review decisions on single images and in bulk: validation, the Decision record that undo restores.

Split from core/review.py (grid, queue, export); core.review re-exports these, so callers keep
`review.decide(...)`. Every decision is authorized in core (review.decide / review.undo /
review.bulk / review.adjudicate), refused on an image held in another reviewer's queue, kept as the
reviewer's vote (core/review_votes.py: double review, metrics, agreement) and leaves exactly one
audit row per image in its own transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import review_votes as votes
from core.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError, require
from core.generation import REASON_CODES
from core.shots import slot_by_key
from core.team.access import authorize
from core.team.audit import record, snapshot
from core.text import clean_text
from db.engine import session_scope
from db.models import Character, Variation

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
    """One review decision and the state it replaced: what the page names in its message and what undo restores.

    `decision` is what the reviewer decided; `after` is the image's (review_status, reviewed_by, reviewed_at)
    right after it (with double review a first vote leaves the image unreviewed); `previous_vote` is the
    reviewer's earlier vote on the image, if any, which undo puts back."""

    variation_id: int
    label: str
    decision: str
    reviewer: str
    reviewed_at: datetime | None
    previous: tuple[str, tuple[str, ...], str, str | None, datetime | None]  # status, codes, note, by, at
    after: tuple[str, str | None, datetime | None] | None = None
    vote_id: int | None = None
    previous_vote: votes.VoteState | None = None
    adjudication: bool = False

    @property
    def final(self) -> str:
        """The image's review state after the decision ('unreviewed' while double review awaits more votes)."""
        return self.after[0] if self.after else self.decision


def _label(s, v: Variation) -> str:
    name = s.execute(sa.select(Character.name).where(Character.id == v.character_id)).scalar_one()
    return image_label(character_name=name, slot_key=v.slot_key, attempt=v.attempt)


def _previous(v: Variation) -> tuple:
    return (v.review_status, tuple(v.reason_codes), v.review_note, v.reviewed_by, v.reviewed_at)


def _apply(s, v: Variation, *, reviewer: str, role: str, action: str, decision: str, codes: list[str], note: str,
           label: str, shown_at: datetime | None = None, timed: bool = True) -> Decision:
    """One reviewer's decision on one locked image: vote, settle, release the claim, one audit row."""
    previous = _previous(v)
    before = snapshot(v, votes.REVIEW_FIELDS)
    prior = votes.vote_state(votes.own_vote(s, variation_id=v.id, reviewer=reviewer))
    before["vote"] = prior.decision if prior else None
    vote_id = None
    if decision == "unreviewed":
        votes.restore_vote(s, variation_id=v.id, reviewer=reviewer, previous=None)
    else:
        seconds = (votes.decision_seconds(s, variation_id=v.id, reviewer=reviewer, shown_at=shown_at)
                   if timed else None)  # a bulk decision has no per-image time
        vote_id = votes.upsert_vote(s, variation_id=v.id, reviewer=reviewer, decision=decision,
                                    codes=codes if decision == "rejected" else [], note=note.strip(), seconds=seconds)
    votes.settle(s, v=v, reviewer=reviewer, decision=decision, codes=codes, note=note)
    votes.drop_claim_and_renew(s, variation_id=v.id, reviewer=reviewer)
    s.add(v)
    s.flush()
    s.refresh(v)
    after = snapshot(v, votes.REVIEW_FIELDS)
    after["vote"] = None if decision == "unreviewed" else decision
    record(s, who=reviewer, role=role, action=action, entity="variation", entity_id=v.id, before=before,
           after=after, label=label)
    return Decision(v.id, label, decision, reviewer, v.reviewed_at, previous,
                    after=(v.review_status, v.reviewed_by, v.reviewed_at), vote_id=vote_id, previous_vote=prior)


def _locked(s, variation_id: int) -> Variation:
    v = require(s.get(Variation, variation_id, with_for_update=True), f"Variation #{variation_id} does not exist.")
    if v.status != "completed":
        raise ValidationError(f"Only completed images can be reviewed (this one is {v.status}).")
    return v


def decide(*, variation_id: int, decision: str, reviewer: str, reason_codes: list[str] | None = None,
           note: str = "", shown_at: datetime | None = None) -> Decision:
    """Approve / reject / reset one image; the returned Decision names the image and can be undone.

    Refused for a role below reviewer, for an image held in someone else's review queue, and (double
    review) for an image already settled. `shown_at` (when the page showed the image) times the decision."""
    codes = _checked_decision(decision, reason_codes, note)
    with session_scope() as s:
        role = authorize(s, who=reviewer, action="review.decide")
        v = _locked(s, variation_id)
        label = _label(s, v)
        votes.refuse_if_claimed_by_other(s, variation_id=v.id, reviewer=reviewer, label=label)
        votes.check_open_for_votes(v, label=label)
        return _apply(s, v, reviewer=reviewer, role=role, action="review.decide", decision=decision, codes=codes,
                      note=note, label=label, shown_at=shown_at)


def review(*, variation_id: int, decision: str, reviewer: str, reason_codes: list[str] | None = None,
           note: str = "") -> Variation:
    decide(variation_id=variation_id, decision=decision, reviewer=reviewer, reason_codes=reason_codes, note=note)
    return get_variation(variation_id=variation_id)


def adjudicate(*, variation_id: int, decision: str, editor: str, reason_codes: list[str] | None = None,
               note: str = "") -> Decision:
    """Settle a 'disputed' image with an adjudication vote: editor role. The reviewers' votes stay as they were
    (agreement is measured on them); the image takes the adjudicator's decision. Refused (ConflictError) for an
    image that is not disputed (now): settled by another editor meanwhile, or still waiting for votes."""
    if decision not in ("approved", "rejected"):
        raise ValidationError(f"An adjudication approves or rejects (not '{decision}').")
    codes = _checked_decision(decision, reason_codes, note)
    with session_scope() as s:
        role = authorize(s, who=editor, action="review.adjudicate")
        v = _locked(s, variation_id)
        label = _label(s, v)
        if v.review_status != "disputed":  # settled meanwhile by another editor, or never in dispute
            by = f" by {v.reviewed_by}" if v.reviewed_by and v.review_status != "unreviewed" else ""
            raise ConflictError(f"{label} is not disputed (it is {v.review_status}{by}); only a disagreement "
                                "between reviewers is adjudicated. Reload the Adjudicate view.")
        previous, before = _previous(v), snapshot(v, votes.REVIEW_FIELDS)
        vote = votes.ReviewVote(variation_id=v.id, reviewer=votes.actor_label(editor), decision=decision,
                                reason_codes=codes if decision == "rejected" else [], note=note.strip(),
                                adjudication=True)
        s.add(vote)
        v.review_status, v.reason_codes = decision, (codes if decision == "rejected" else [])
        v.review_note, v.reviewed_by, v.reviewed_at = note.strip(), editor, votes.utcnow()
        s.add(v)
        s.flush()
        s.refresh(v)
        record(s, who=editor, role=role, action="review.adjudicate", entity="variation", entity_id=v.id,
               before=before, after=snapshot(v, votes.REVIEW_FIELDS), label=label)
        return Decision(v.id, label, decision, editor, v.reviewed_at, previous,
                        after=(v.review_status, v.reviewed_by, v.reviewed_at), vote_id=vote.id, adjudication=True)


def undo(*, decision: Decision, who: str | None = None) -> Decision:
    """Put the image (and the reviewer's vote) back the way it was before `decision`, unless someone reviewed
    it again since (then nothing changes: undoing would silently drop their decision)."""
    who = who or decision.reviewer
    with session_scope() as s:
        role = authorize(s, who=who, action="review.adjudicate" if decision.adjudication else "review.undo")
        if not decision.adjudication and votes.actor_label(who) != votes.actor_label(decision.reviewer):
            raise PermissionDenied(f"Only {votes.actor_label(decision.reviewer)} can undo their own review decision; "
                                   "decide on the image again instead.")
        v = require(s.get(Variation, decision.variation_id, with_for_update=True),
                    f"{decision.label} no longer exists; nothing to undo.")
        expected = decision.after or (decision.decision, decision.reviewer, decision.reviewed_at)
        vote_now = (s.get(votes.ReviewVote, decision.vote_id) if decision.vote_id is not None else None)
        vote_gone = decision.vote_id is not None and (vote_now is None or vote_now.decision != decision.decision)
        if (v.review_status, v.reviewed_by, v.reviewed_at) != tuple(expected) or vote_gone:
            raise ConflictError(f"{decision.label} was reviewed again since ({v.review_status} by {v.reviewed_by}); "
                                "nothing was undone.")
        before = snapshot(v, votes.REVIEW_FIELDS)
        status, codes, note, by, at = decision.previous
        v.review_status, v.reason_codes, v.review_note, v.reviewed_by, v.reviewed_at = status, list(codes), note, by, at
        if decision.adjudication:
            s.delete(vote_now)
        elif decision.vote_id is not None or decision.decision == "unreviewed":
            votes.restore_vote(s, variation_id=v.id, reviewer=decision.reviewer, previous=decision.previous_vote)
        s.add(v)
        s.flush()
        record(s, who=who, role=role, action="review.undo", entity="variation", entity_id=v.id, before=before,
               after=snapshot(v, votes.REVIEW_FIELDS), label=decision.label)
    return decision


def _bulk(*, variation_ids: list[int], reviewer: str, decision: str, codes: list[str], note: str,
          only_unreviewed: bool) -> int:
    """Set-based (a map selection can hold thousands of images): one vote and one audit row per affected image,
    all in one transaction. Images held in someone else's queue, not completed, or (double review) already
    settled are left alone. Bulk decisions carry no per-image time."""
    try:
        ids = sorted({int(i) for i in variation_ids})
    except (TypeError, ValueError):
        raise ValidationError("Images are given by their numeric ids.") from None
    ids = [i for i in ids if 0 < i < 2**31]  # anything else is no image: left alone like a missing one
    with session_scope() as s:
        role = authorize(s, who=reviewer, action="review.bulk")
        if not ids:
            return 0
        k = votes.votes_required()
        q = sa.select(Variation.id, Variation.character_id, Variation.slot_key, Variation.attempt,
                      *[getattr(Variation, f) for f in votes.REVIEW_FIELDS]).where(
            Variation.id.in_(ids), Variation.status == "completed")
        if only_unreviewed or k > 1:
            q = q.where(Variation.review_status == "unreviewed")
        rows = s.execute(q.order_by(Variation.id).with_for_update()).all()
        held = votes.claimed_others(s, variation_ids=[r.id for r in rows], reviewer=reviewer)
        rows = [r for r in rows if r.id not in held]
        if not rows:
            return 0
        target = [r.id for r in rows]
        prior = dict(s.execute(sa.select(votes.ReviewVote.variation_id, votes.ReviewVote.decision).where(
            votes.ReviewVote.variation_id.in_(target), votes.ReviewVote.reviewer == votes.actor_label(reviewer),
            votes.ReviewVote.adjudication.is_(False))).all())
        vote_codes = codes if decision == "rejected" else []
        votes.upsert_votes(s, variation_ids=target, reviewer=reviewer, decision=decision, codes=vote_codes,
                           note=note.strip())
        if k == 1:
            now = votes.utcnow()
            after = {i: {"review_status": decision, "reason_codes": vote_codes, "review_note": note.strip(),
                         "reviewed_by": reviewer, "reviewed_at": now} for i in target}
            s.execute(sa.update(Variation).where(Variation.id.in_(target)).values(**after[target[0]]))
        else:
            cast = votes.votes_on(s, target)
            after = {i: st for i in target if (st := votes.final_state(cast.get(i, []), k)) is not None}
            if after:
                s.execute(sa.update(Variation), [{"id": i, **st} for i, st in after.items()])
        s.execute(sa.delete(votes.ReviewClaim).where(votes.ReviewClaim.variation_id.in_(target),
                                                     votes.ReviewClaim.reviewer == votes.actor_label(reviewer)))
        votes.renew(s, reviewer=reviewer)
        names = dict(s.execute(sa.select(Character.id, Character.name).where(
            Character.id.in_({r.character_id for r in rows}))).all())
        for r in rows:
            before = {f: getattr(r, f) for f in votes.REVIEW_FIELDS} | {"vote": prior.get(r.id)}
            now_fields = {f: getattr(r, f) for f in votes.REVIEW_FIELDS} | after.get(r.id, {}) | {"vote": decision}
            record(s, who=reviewer, role=role, action="review.bulk", entity="variation", entity_id=r.id,
                   before=before, after=now_fields,
                   label=image_label(character_name=names[r.character_id], slot_key=r.slot_key, attempt=r.attempt))
        return len(target)


def bulk_approve(*, variation_ids: list[int], reviewer: str) -> int:
    """Approves the completed, unreviewed ones among `variation_ids`; returns how many."""
    return _bulk(variation_ids=variation_ids, reviewer=reviewer, decision="approved", codes=[], note="",
                 only_unreviewed=True)


def bulk_reject(*, variation_ids: list[int], reviewer: str, reason_codes: list[str], note: str = "") -> int:
    """Rejects the completed ones among `variation_ids` with the same reasons; returns how many
    (images still generating or failed are left alone, as a single review would refuse them)."""
    codes = _checked_decision("rejected", reason_codes, note)
    return _bulk(variation_ids=variation_ids, reviewer=reviewer, decision="rejected", codes=codes, note=note,
                 only_unreviewed=False)
