"""Reviewer metrics per person and day, aggregated in SQL from the review votes.

Images reviewed, median seconds per decision (timed on the vote: since the image was shown or
claimed, see core/review_votes.py; bulk decisions carry no time and are left out of the median),
approval rate, adjudications, and the reason codes used with their counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import sqlalchemy as sa

from core.errors import ValidationError
from db.engine import session_scope


@dataclass(frozen=True)
class ReviewerDay:
    reviewer: str
    day: date
    reviewed: int  # reviewer votes (one per image)
    approved: int
    median_seconds: float | None
    adjudicated: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.reviewed if self.reviewed else None


_SQL = """
with v as (
    select reviewer, (decided_at at time zone 'UTC')::date as day, decision, seconds, adjudication, reason_codes
    from review_vote
    where decided_at >= :since and decided_at < :until and (cast(:who as text) is null or reviewer = :who)
), totals as (
    select reviewer, day,
           count(*) filter (where not adjudication) as reviewed,
           count(*) filter (where not adjudication and decision = 'approved') as approved,
           percentile_cont(0.5) within group (order by seconds) filter (where not adjudication) as median_s,
           count(*) filter (where adjudication) as adjudicated
    from v group by reviewer, day
), reasons as (
    select reviewer, day, jsonb_object_agg(code, n) as reasons from (
        select reviewer, day, code, count(*) as n
        from v cross join lateral jsonb_array_elements_text(v.reason_codes) as code
        group by reviewer, day, code) c
    group by reviewer, day
)
select t.reviewer, t.day, t.reviewed, t.approved, t.median_s, t.adjudicated, coalesce(r.reasons, '{}'::jsonb)
from totals t left join reasons r using (reviewer, day)
order by t.day desc, t.reviewer
"""


def per_reviewer_day(*, since: date, until: date, reviewer: str | None = None) -> list[ReviewerDay]:
    """One row per reviewer and UTC day in [since, until] (both days included), newest day first."""
    if until < since:
        raise ValidationError(f"The period ends ({until}) before it starts ({since}).")
    start = datetime.combine(since, time.min, tzinfo=timezone.utc)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=timezone.utc)
    with session_scope() as s:
        rows = s.execute(sa.text(_SQL), {"since": start, "until": end, "who": reviewer}).all()
    return [ReviewerDay(r[0], r[1], int(r[2]), int(r[3]), None if r[4] is None else float(r[4]), int(r[5]),
                        dict(sorted(r[6].items(), key=lambda kv: (-kv[1], kv[0])))) for r in rows]
