"""A run's state as pages and tests read it: the latest attempt per slot, counts, cost, a character's runs.

Apart from core/generation.py (which requests and executes runs) because reading a run is what every page
polls, and generation.py had grown past what one module should hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from core.errors import require
from core.shots import shot_list
from db.engine import session_scope
from db.models import RUN_ACTIVE, GenerationRun, Variation


def _latest_attempts(s, run_id: int) -> dict[str, Variation]:
    rows = s.execute(sa.select(Variation).where(Variation.run_id == run_id).order_by(Variation.attempt)).scalars().all()
    latest: dict[str, Variation] = {}
    for v in rows:
        latest[v.slot_key] = v
    return latest


@dataclass(frozen=True)
class RunStatus:
    run_id: int
    character_id: int
    status: str
    counts: dict[str, int]
    slots: list[Variation]
    created_at: datetime
    finished_at: datetime | None
    cost_usd: Decimal

    @property
    def active(self) -> bool:
        return self.status in RUN_ACTIVE


def run_status(*, run_id: int) -> RunStatus:
    with session_scope() as s:
        run = require(s.get(GenerationRun, run_id), f"Run #{run_id} does not exist.")
        latest = _latest_attempts(s, run_id)
        order = [slot.key for slot in shot_list()]
        slots = sorted(latest.values(), key=lambda v: order.index(v.slot_key) if v.slot_key in order else 99)
        all_cost = s.execute(sa.select(sa.func.coalesce(sa.func.sum(Variation.cost_usd), 0))
                             .where(Variation.run_id == run_id)).scalar_one()
    counts: dict[str, int] = {}
    for v in slots:
        counts[v.status] = counts.get(v.status, 0) + 1
    return RunStatus(run.id, run.character_id, run.status, counts, slots, run.created_at, run.finished_at,
                     Decimal(all_cost))


def runs_for_character(*, character_id: int, limit: int = 20) -> list[GenerationRun]:
    with session_scope() as s:
        return list(s.execute(sa.select(GenerationRun).where(GenerationRun.character_id == character_id)
                              .order_by(GenerationRun.id.desc()).limit(limit)).scalars().all())
