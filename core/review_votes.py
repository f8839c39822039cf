"""Review votes: every decision is one reviewer's vote; the image's state follows from the votes.

With REVIEW_VOTES_REQUIRED = 1 (the default) the latest decision is the image's state, exactly as
before votes existed; the vote is still kept, because reviewer metrics and agreement are read from
votes. With k > 1 the image stays 'unreviewed' until k reviewers voted independently: k agreeing
votes make it approved / rejected, any disagreement makes it 'disputed' until an editor adjudicates
(an adjudication vote, which settles the image whatever the other votes say).

Also here: the claim guard every decision passes (an image held in someone else's review queue is
theirs to decide) and how long a decision took (recorded on the vote, for the Activity page).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from core.errors import ConflictError
from core.settings import get_settings
from core.team.audit import actor_label
from db.engine import session_scope
from db.models import Variation, utcnow
from db.models_team import ReviewClaim, ReviewVote

# the variation fields a review decision changes: what the audit row shows before → after
REVIEW_FIELDS = ("review_status", "reason_codes", "review_note", "reviewed_by", "reviewed_at")
REVIEWED_BY_MAX = 120


def votes_required() -> int:
    """k: independent decisions an image needs (1 = a single decision settles it)."""
    return max(1, int(get_settings().review_votes_required))


SEALED_VOTE = "(hidden until the image is settled)"


def sealed_images(*, variation_ids: list[int]) -> set[int]:
    """Images whose individual votes must not be shown yet: under double review a vote is blind until the
    image is settled, or the next reviewer (who may open the Audit page or a character's History) is biased."""
    ids = sorted({int(i) for i in variation_ids})
    if votes_required() <= 1 or not ids:
        return set()
    with session_scope() as s:
        return set(s.execute(sa.select(Variation.id).where(
            Variation.id.in_(ids), Variation.review_status == "unreviewed")).scalars())


def seal_trail(rows: list, *, entity_of, changes_of) -> dict[int, dict]:
    """{index: changes with the vote hidden} for the audit rows (of any shape) that carry an unsettled vote."""
    voted = {i: r for i, r in enumerate(rows) if entity_of(r)[0] == "variation" and "vote" in (changes_of(r) or {})
             and str(entity_of(r)[1]).isdigit()}
    hidden = sealed_images(variation_ids=[int(entity_of(r)[1]) for r in voted.values()])
    return {i: {**changes_of(r), "vote": [SEALED_VOTE, SEALED_VOTE]} for i, r in voted.items()
            if int(entity_of(r)[1]) in hidden}


@dataclass(frozen=True)
class VoteState:
    """A reviewer's vote as it was (undo puts it back)."""

    decision: str
    reason_codes: tuple[str, ...]
    note: str
    seconds: float | None
    decided_at: datetime


def refuse_if_claimed_by_other(s: Session, *, variation_id: int, reviewer: str, label: str) -> None:
    """A decision on an image held in another reviewer's queue is refused: two people never judge it at once."""
    row = s.execute(sa.select(ReviewClaim.reviewer, ReviewClaim.expires_at).where(
        ReviewClaim.variation_id == variation_id, ReviewClaim.expires_at > sa.func.now())).first()
    if row is not None and row[0] != actor_label(reviewer):
        raise ConflictError(f"{label} is in {row[0]}'s review queue right now (held until "
                            f"{row[1]:%H:%M:%S} UTC); decide the images of your own queue.")


def claimed_others(s: Session, *, variation_ids: list[int], reviewer: str) -> set[int]:
    """Which of `variation_ids` are held by someone else now (bulk decisions leave them alone)."""
    if not variation_ids:
        return set()
    return set(s.execute(sa.select(ReviewClaim.variation_id).where(
        ReviewClaim.variation_id.in_(variation_ids), ReviewClaim.expires_at > sa.func.now(),
        ReviewClaim.reviewer != actor_label(reviewer))).scalars())


def own_vote(s: Session, *, variation_id: int, reviewer: str) -> ReviewVote | None:
    return s.execute(sa.select(ReviewVote).where(
        ReviewVote.variation_id == variation_id, ReviewVote.reviewer == actor_label(reviewer),
        ReviewVote.adjudication.is_(False))).scalars().first()


def vote_state(vote: ReviewVote | None) -> VoteState | None:
    if vote is None:
        return None
    return VoteState(vote.decision, tuple(vote.reason_codes), vote.note, vote.seconds, vote.decided_at)


def decision_seconds(s: Session, *, variation_id: int, reviewer: str, shown_at: datetime | None) -> float | None:
    """Seconds this decision took: since the image was shown (when the page says so), else since it was
    claimed or since the reviewer's previous decision, whichever is later (a queue is claimed in a batch,
    so the claim time alone would charge the fifth image with the four before it). None without either."""
    who = actor_label(reviewer)
    start = shown_at
    if start is None:
        claimed = s.execute(sa.select(ReviewClaim.claimed_at).where(
            ReviewClaim.variation_id == variation_id, ReviewClaim.reviewer == who)).scalar()
        if claimed is None:
            return None
        last = s.execute(sa.select(sa.func.max(ReviewVote.decided_at)).where(ReviewVote.reviewer == who)).scalar()
        start = max(claimed, last) if last is not None else claimed
    return max(0.0, (utcnow() - start).total_seconds())


def upsert_vote(s: Session, *, variation_id: int, reviewer: str, decision: str, codes: list[str], note: str,
                seconds: float | None) -> int:
    """The reviewer's one vote on the image (a second decision by the same person replaces it)."""
    ins = pg_insert(ReviewVote).values(variation_id=variation_id, reviewer=actor_label(reviewer), decision=decision,
                                       reason_codes=codes, note=note, seconds=seconds, adjudication=False,
                                       decided_at=utcnow())
    ins = ins.on_conflict_do_update(
        index_elements=[ReviewVote.variation_id, ReviewVote.reviewer], index_where=sa.text("NOT adjudication"),
        set_={"decision": ins.excluded.decision, "reason_codes": ins.excluded.reason_codes, "note": ins.excluded.note,
              "seconds": ins.excluded.seconds, "decided_at": ins.excluded.decided_at})
    return s.execute(ins.returning(ReviewVote.id)).scalar_one()


def upsert_votes(s: Session, *, variation_ids: list[int], reviewer: str, decision: str, codes: list[str],
                 note: str) -> None:
    """The same (untimed) vote on many images in one small statement (bulk decisions: ids as one array)."""
    ids = sa.func.unnest(sa.cast(sa.literal(list(variation_ids)), sa.ARRAY(sa.Integer))).table_valued("vid").render_derived()
    src = sa.select(ids.c.vid, sa.literal(actor_label(reviewer)), sa.literal(decision),
                    sa.cast(sa.literal(json.dumps(codes)), postgresql.JSONB), sa.literal(note), sa.false(),
                    sa.literal(utcnow()))
    ins = pg_insert(ReviewVote).from_select(
        ["variation_id", "reviewer", "decision", "reason_codes", "note", "adjudication", "decided_at"], src)
    s.execute(ins.on_conflict_do_update(
        index_elements=[ReviewVote.variation_id, ReviewVote.reviewer], index_where=sa.text("NOT adjudication"),
        set_={"decision": ins.excluded.decision, "reason_codes": ins.excluded.reason_codes, "note": ins.excluded.note,
              "seconds": None, "decided_at": ins.excluded.decided_at}))


def restore_vote(s: Session, *, variation_id: int, reviewer: str, previous: VoteState | None) -> None:
    """Undo: the reviewer's vote goes back to what it was (or away, if there was none)."""
    who = actor_label(reviewer)
    s.execute(sa.delete(ReviewVote).where(ReviewVote.variation_id == variation_id, ReviewVote.reviewer == who,
                                          ReviewVote.adjudication.is_(False)))
    if previous is not None:
        s.add(ReviewVote(variation_id=variation_id, reviewer=who, decision=previous.decision,
                         reason_codes=list(previous.reason_codes), note=previous.note, seconds=previous.seconds,
                         decided_at=previous.decided_at))


def final_state(votes: list[tuple[str, str, list[str], str]], k: int) -> dict | None:
    """The review fields k or more reviewer votes ((reviewer, decision, codes, note), in decision order) give
    an image: the agreed decision, or 'disputed' (reasons and notes of all votes kept for the adjudicator).
    None while fewer than k votes are in."""
    if len(votes) < k:
        return None
    decisions = {d for _, d, _, _ in votes}
    status = decisions.pop() if len(decisions) == 1 else "disputed"
    return {"review_status": status,
            "reason_codes": [] if status == "approved" else list(dict.fromkeys(c for _, _, cs, _ in votes for c in cs)),
            "review_note": " / ".join(n for _, _, _, n in votes if n),
            "reviewed_by": ", ".join(r for r, _, _, _ in votes)[:REVIEWED_BY_MAX],
            "reviewed_at": utcnow()}


def votes_on(s: Session, variation_ids: list[int]) -> dict[int, list[tuple[str, str, list[str], str]]]:
    """The reviewer (non-adjudication) votes of each image, in decision order."""
    rows = s.execute(sa.select(ReviewVote.variation_id, ReviewVote.reviewer, ReviewVote.decision,
                               ReviewVote.reason_codes, ReviewVote.note)
                     .where(ReviewVote.variation_id.in_(variation_ids), ReviewVote.adjudication.is_(False))
                     .order_by(ReviewVote.decided_at, ReviewVote.id)).all()
    out: dict[int, list] = {}
    for vid, *vote in rows:
        out.setdefault(vid, []).append(tuple(vote))
    return out


def settle(s: Session, *, v: Variation, reviewer: str, decision: str, codes: list[str], note: str) -> None:
    """Set the image's review fields from its votes (after the reviewer's vote was written).

    k = 1: this decision is the state (today's behaviour). k > 1: unchanged until k votes (final_state)."""
    k = votes_required()
    if k > 1 and decision == "unreviewed":  # a withdrawn vote: the image was unreviewed and stays so
        return
    if k == 1:
        v.review_status = decision
        v.reason_codes = codes if decision == "rejected" else []
        v.review_note = note.strip()
        v.reviewed_by, v.reviewed_at = reviewer, utcnow()
        return
    state = final_state(votes_on(s, [v.id]).get(v.id, []), k)
    for name, value in (state or {}).items():
        setattr(v, name, value)


def drop_claim_and_renew(s: Session, *, variation_id: int, reviewer: str) -> None:
    """A decision releases the decided image and renews the reviewer's other claims (they are working)."""
    who = actor_label(reviewer)
    s.execute(sa.delete(ReviewClaim).where(ReviewClaim.variation_id == variation_id, ReviewClaim.reviewer == who))
    renew(s, reviewer=reviewer)


def renew(s: Session, *, reviewer: str) -> list[int]:
    """Push the expiry of the reviewer's live claims REVIEW_CLAIM_TTL_S ahead; returns the held ids."""
    ttl = float(get_settings().review_claim_ttl_s)
    return list(s.execute(
        sa.update(ReviewClaim).where(ReviewClaim.reviewer == actor_label(reviewer),
                                     ReviewClaim.expires_at > sa.func.now())
        .values(expires_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, ttl))
        .returning(ReviewClaim.variation_id)).scalars())


def check_open_for_votes(v: Variation, *, label: str) -> None:
    """With double review, an image already settled (or disputed) takes no more reviewer votes."""
    if votes_required() > 1 and v.review_status != "unreviewed":
        then = ("an editor settles it in the Adjudicate view" if v.review_status == "disputed" else
                "regenerate the slot for a new attempt to review")
        raise ConflictError(f"{label} is already {v.review_status} by double review; {then}.")
