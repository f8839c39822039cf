"""Cost of a call from the usage the provider reports, using core/pricing_table.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

PRICING_FILE = Path(__file__).with_name("pricing_table.json")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    image_tokens_in: int = 0
    images_out: int = 0


@lru_cache(maxsize=1)
def pricing_table() -> dict[str, dict[str, Decimal]]:
    raw = json.loads(PRICING_FILE.read_text(encoding="utf-8"))["models"]
    return {m: {k: Decimal(str(v)) for k, v in rates.items()} for m, rates in raw.items()}


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
