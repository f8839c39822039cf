"""Review sessions that don't collide: a reviewer's queue is a set of claimed images.

Opening the queue claims the next N images for the reviewer for REVIEW_CLAIM_TTL_S; every
claim call and every decision renews their claims; switching filters or leaving the queue
releases them, and a forgotten tab simply times out. Claiming is one INSERT … SELECT … FOR
UPDATE SKIP LOCKED … ON CONFLICT statement: concurrent claimers skip the rows another one is
taking, and the claim primary key (with expired-claim takeover only) is the last word, so two
reviewers never hold the same image at once. Candidates are read through the partial index of
completed, unreviewed variations (migration 0022), not by scanning every variation.

With double review an image is offered to a reviewer only if they have not voted on it yet,
so the second reviewer never meets their own earlier vote, and never sees the first one's.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import aliased

from core import review_votes as votes
from core.errors import ValidationError
from core.settings import get_settings
from core.team.access import authorize, role_of
from core.team.audit import actor_label, record
from db.engine import session_scope
from db.models import Character, Variation
from db.models_team import ReviewClaim, ReviewVote

CLAIM_BATCH = 10  # images a reviewer holds at once: enough to look ahead, few enough not to starve the others
CLAIM_MAX = 200


def _ttl():
    return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, float(get_settings().review_claim_ttl_s))


def _waiting(filters, *, off_model_only: bool):
    """Completed, unreviewed latest attempts of the characters `filters` shows, joined to their character.

    Written against variation directly (not the grid's DISTINCT ON over the whole table) so the planner
    can use the partial index of unreviewed images; only a review-state filter needs the grid's subquery."""
    from core import review

    v2 = aliased(Variation)
    newer = sa.select(sa.literal(1)).where(v2.character_id == Variation.character_id,
                                           v2.slot_key == Variation.slot_key, v2.id > Variation.id)
    if filters.run_id is not None:
        newer = newer.where(v2.run_id == filters.run_id)
    q = (sa.select(Variation.id).join(Character, Character.id == Variation.character_id)
         .where(Variation.status == "completed", Variation.review_status == "unreviewed",
                ~newer.exists(), Character.archived.is_(False)))
    if filters.run_id is not None:
        q = q.where(Variation.run_id == filters.run_id)
    if filters.style_id is not None:
        q = q.where(Character.style_id == filters.style_id)
    if filters.search.strip():
        pattern = filters.search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(sa.func.lower(Character.name).like(f"%{pattern}%", escape="\\"))
    if filters.review_state:
        q = q.where(Character.id.in_(review._matching_characters(filters).with_only_columns(Character.id)))
    if off_model_only:
        from core.vectors.drift import off_model_threshold

        q = q.where(Variation.drift_score > off_model_threshold())
    return q


def _order(order: str):
    from core import review

    if order not in review.QUEUE_ORDERS:
        raise ValidationError(f"Unknown queue order '{order}'.")
    grid = (sa.func.lower(Character.name), Character.id, review._slot_rank(Variation.slot_key))
    return grid if order == "grid" else (Variation.drift_score.desc().nulls_last(), *grid)


def _not_mine_to_take(who: str, *, held_by_me_too: bool = False):
    """Held by someone else now (or by anyone, when looking for new images), or already voted on by `who`
    (double review: never the same person twice)."""
    held = sa.select(sa.literal(1)).where(ReviewClaim.variation_id == Variation.id,
                                          ReviewClaim.expires_at > sa.func.now())
    if not held_by_me_too:
        held = held.where(ReviewClaim.reviewer != who)
    voted = sa.select(sa.literal(1)).where(ReviewVote.variation_id == Variation.id, ReviewVote.reviewer == who,
                                           ReviewVote.adjudication.is_(False))
    return sa.or_(held.exists(), voted.exists())


def claim_next(*, reviewer: str, filters=None, order: str = "grid", off_model_only: bool = False,
               n: int = CLAIM_BATCH) -> list:
    """The reviewer's queue: their live claims that still match `filters` (renewed), topped up to `n` with the
    next unclaimed images, in queue order. Claims outside the filters are released (the reviewer moved on)."""
    from core import review

    filters = filters or review.ReviewFilter()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= CLAIM_MAX:
        raise ValidationError(f"Claim between 1 and {CLAIM_MAX} images at once (asked for {n}).")
    who = actor_label(reviewer)
    with session_scope() as s:
        role = authorize(s, who=reviewer, action="review.claim")
        held = votes.renew(s, reviewer=reviewer)
        keep: list[int] = []
        if held:
            keep = list(s.execute(_waiting(filters, off_model_only=off_model_only).where(
                Variation.id.in_(held), ~_not_mine_to_take(who))).scalars())
            gone = sorted(set(held) - set(keep))
            if gone:
                s.execute(sa.delete(ReviewClaim).where(ReviewClaim.reviewer == who, ReviewClaim.variation_id.in_(gone)))
        taken: list[int] = []
        need = n - len(keep)
        if need > 0:
            cand = (_waiting(filters, off_model_only=off_model_only)
                    .where(~_not_mine_to_take(who, held_by_me_too=True))
                    .order_by(*_order(order)).limit(need)
                    .with_for_update(of=Variation, skip_locked=True)).cte("cand")
            ins = pg_insert(ReviewClaim).from_select(
                ["variation_id", "reviewer", "claimed_at", "expires_at"],
                sa.select(cand.c.id, sa.literal(who), sa.func.now(), _ttl()))
            ins = ins.on_conflict_do_update(
                index_elements=[ReviewClaim.variation_id],
                set_={"reviewer": ins.excluded.reviewer, "claimed_at": ins.excluded.claimed_at,
                      "expires_at": ins.excluded.expires_at},
                where=ReviewClaim.expires_at <= sa.func.now())  # only an expired claim is taken over
            taken = sorted(s.execute(ins.returning(ReviewClaim.variation_id)).scalars())
        if taken:
            record(s, who=reviewer, role=role, action="review.claim", entity="review_claim", entity_id=who,
                   before={"variation_ids": None}, after={"variation_ids": taken},
                   label=f"claimed {len(taken)} image(s) for review")
        mine = keep + taken
        if not mine:
            return []
        rows = s.execute(sa.select(Variation.id, Character.id, Character.name, Variation.slot_key, Variation.attempt,
                                   Variation.drift_score).join(Character, Character.id == Variation.character_id)
                         .where(Variation.id.in_(mine)).order_by(*_order(order))).all()
    return [review.QueueItem(*r) for r in rows]


def release(*, reviewer: str, variation_ids: list[int] | None = None) -> int:
    """Give back the reviewer's claims (all, or the given images) so others can take them; returns how many.

    Not authorized like taking images: giving your own claims back only frees images for the others, and a
    reviewer demoted (or deactivated) while holding a queue must still be able to, or the images stay locked
    for everyone until the claims expire (and leaving the queue showed them a refusal)."""
    who = actor_label(reviewer)
    if variation_ids is not None:
        try:
            variation_ids = [i for i in {int(i) for i in variation_ids} if 0 < i < 2**31]
        except (TypeError, ValueError):
            raise ValidationError("Images are given by their numeric ids.") from None
    with session_scope() as s:
        role = role_of(s, who=reviewer)
        q = sa.delete(ReviewClaim).where(ReviewClaim.reviewer == who)
        if variation_ids is not None:
            q = q.where(ReviewClaim.variation_id.in_(variation_ids))
        freed = sorted(s.execute(q.returning(ReviewClaim.variation_id)).scalars())
        if freed:
            record(s, who=reviewer, role=role, action="review.claim", entity="review_claim", entity_id=who,
                   before={"variation_ids": freed}, after={"variation_ids": None},
                   label=f"released {len(freed)} image(s)")
        return len(freed)


def held_by(*, variation_ids: list[int]) -> dict[int, str]:
    """Who holds each of these images now (live claims only)."""
    if not variation_ids:
        return {}
    with session_scope() as s:
        return dict(s.execute(sa.select(ReviewClaim.variation_id, ReviewClaim.reviewer).where(
            ReviewClaim.variation_id.in_(variation_ids), ReviewClaim.expires_at > sa.func.now())).all())


def available(*, reviewer: str, filters=None, off_model_only: bool = False) -> int:
    """How many images this reviewer could still get: waiting, not held by anyone else, not voted on by them."""
    from core import review

    filters = filters or review.ReviewFilter()
    q = _waiting(filters, off_model_only=off_model_only).where(~_not_mine_to_take(actor_label(reviewer)))
    with session_scope() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())
