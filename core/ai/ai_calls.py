"""Reading the AI call log: filtered listing, totals and the failure list."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from db.engine import session_scope
from db.models import AICall

GROUPINGS: dict[str, Any] = {
    "day": sa.func.date_trunc("day", AICall.created_at),
    "function": AICall.function,
    "model": AICall.model,
    "provider": AICall.provider,
    "template version": sa.func.concat(
        sa.func.coalesce(AICall.template_name, "—"), " · ",
        sa.case((AICall.template_layer == "db", sa.func.concat("v", sa.cast(AICall.template_version, sa.Text))),
                else_=sa.func.coalesce(AICall.template_layer, "—")),
    ),
}


@dataclass(frozen=True)
class CallFilter:
    functions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    def apply(self, q):
        if self.functions:
            q = q.where(AICall.function.in_(self.functions))
        if self.statuses:
            q = q.where(AICall.status.in_(self.statuses))
        if self.models:
            q = q.where(AICall.model.in_(self.models))
        if self.since:
            q = q.where(AICall.created_at >= datetime.combine(self.since, time.min, tzinfo=timezone.utc))
        if self.until:
            q = q.where(AICall.created_at < datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=timezone.utc))
        return q


def list_calls(*, flt: CallFilter = CallFilter(), limit: int = 500) -> list[AICall]:
    q = flt.apply(sa.select(AICall)).order_by(AICall.created_at.desc(), AICall.id.desc()).limit(limit)
    with session_scope() as s:
        return list(s.execute(q).scalars().all())


def totals(*, by: str, flt: CallFilter = CallFilter()) -> list[dict[str, Any]]:
    key = GROUPINGS[by].label("key")
    q = flt.apply(
        sa.select(
            key, sa.func.count().label("calls"),
            sa.func.count().filter(AICall.status != "succeeded").label("failed"),
            sa.func.coalesce(sa.func.sum(AICall.cost_usd), 0).label("cost_usd"),
            sa.func.sum(AICall.tokens_in).label("tokens_in"), sa.func.sum(AICall.tokens_out).label("tokens_out"),
            sa.func.sum(AICall.images).label("images"),
            sa.func.percentile_cont(0.5).within_group(AICall.duration_ms).label("p50_ms"),
        )
    ).group_by(key).order_by(key)
    with session_scope() as s:
        return [dict(r._mapping) for r in s.execute(q).all()]


def grand_total(*, flt: CallFilter = CallFilter()) -> tuple[int, Decimal, int]:
    """(calls, cost, calls that did not succeed)."""
    q = flt.apply(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(AICall.cost_usd), 0),
                            sa.func.count().filter(AICall.status != "succeeded")))
    with session_scope() as s:
        n, cost, failed = s.execute(q).one()
    return int(n), Decimal(cost), int(failed)


def distinct_values(column: str) -> list[str]:
    col = getattr(AICall, column)
    with session_scope() as s:
        return [v for v in s.execute(sa.select(col).distinct().order_by(col)).scalars().all() if v]


def spend_series(*, flt: CallFilter = CallFilter()) -> list[dict[str, Any]]:
    """Spend per day and function, for the chart."""
    day = sa.func.date_trunc("day", AICall.created_at).label("day")
    q = flt.apply(
        sa.select(day, AICall.function, sa.func.coalesce(sa.func.sum(AICall.cost_usd), 0).label("cost_usd"),
                  sa.func.count().label("calls"))
    ).group_by(day, AICall.function).order_by(day)
    with session_scope() as s:
        return [dict(r._mapping) for r in s.execute(q).all()]
