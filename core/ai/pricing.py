"""Cost of a call from the usage the provider reports.

Rates are the defaults shipped in core/ai/pricing_table.json, overridden per model by the team's own prices
(the model_price table, set by an admin through core/ai/prices.py). Every process re-reads the overrides
at most PRICES_TTL_S after a change, so a worker prices its next call at the new rate without a restart.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger(__name__)

PRICING_FILE = Path(__file__).with_name("pricing_table.json")
MILLION = Decimal(1_000_000)
RATE_KEYS = ("input_per_1m", "image_input_per_1m", "output_per_1m", "per_image")
PRICES_TTL_S = 10.0
_cache: dict[str, object] = {"at": -1e9, "table": None}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    image_tokens_in: int = 0
    images_out: int = 0


@lru_cache(maxsize=1)
def default_table() -> dict[str, dict[str, Decimal]]:
    """The shipped defaults (read once per process)."""
    raw = json.loads(PRICING_FILE.read_text(encoding="utf-8"))["models"]
    return {m: {k: Decimal(str(v)) for k, v in rates.items()} for m, rates in raw.items()}


def _team_prices() -> dict[str, dict[str, Decimal]]:
    from db.engine import session_scope

    with session_scope() as s:
        rows = s.execute(sa.text("select model, rates from model_price")).all()
    return {m: {k: Decimal(str(v)) for k, v in (rates or {}).items()} for m, rates in rows}


def forget_cached_prices() -> None:
    """After a price change in this process: the next cost uses it at once (other processes within the TTL)."""
    with _cache_lock:
        _cache["at"] = -1e9


def pricing_table() -> dict[str, dict[str, Decimal]]:
    """Defaults overlaid with the team's prices; the overrides are cached for PRICES_TTL_S. Unreachable
    database: the last table read (or the defaults), logged — pricing never fails a call that succeeded."""
    with _cache_lock:
        if time.monotonic() - float(_cache["at"]) < PRICES_TTL_S and _cache["table"] is not None:
            return _cache["table"]  # type: ignore[return-value]
    try:
        team = _team_prices()
    except sa.exc.SQLAlchemyError as err:
        log.warning("team prices not read (database unavailable?); using the last known prices: %s", err)
        return _cache["table"] or default_table()  # type: ignore[return-value]
    table = {**default_table(), **team}
    with _cache_lock:
        _cache.update(at=time.monotonic(), table=table)
    return table


def rates_for(model: str) -> dict[str, Decimal] | None:
    table = pricing_table()
    if model in table:
        return table[model]
    # dated snapshots ("gpt-4o-mini-2024-07-18") price like their family
    for name in sorted(table, key=len, reverse=True):
        if model.startswith(name):
            return table[name]
    return None


def cost_usd(model: str, usage: Usage) -> Decimal | None:
    """None when the model is not in the table: unknown cost is shown as unknown, not as zero."""
    rates = rates_for(model)
    if rates is None:
        return None
    text_in = usage.tokens_in - usage.image_tokens_in
    cost = (
        Decimal(text_in) * rates.get("input_per_1m", Decimal(0))
        + Decimal(usage.image_tokens_in) * rates.get("image_input_per_1m", rates.get("input_per_1m", Decimal(0)))
        + Decimal(usage.tokens_out) * rates.get("output_per_1m", Decimal(0))
    ) / MILLION
    if usage.images_out and usage.tokens_out == 0:
        cost += rates.get("per_image", Decimal(0)) * usage.images_out
    return cost.quantize(Decimal("0.000001"))
