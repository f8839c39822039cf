"""The team's prices: an admin sets what the contract says per model; every cost computed afterwards uses it.

Why a table and not the JSON file: the file ships with the code (a deploy would overwrite a hand edit, and
workers on other machines would not see it); a row is one place every process reads, with who changed it
and when in the audit trail. Costs already logged keep the price they were made at.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from core.ai.pricing import PRICES_TTL_S, RATE_KEYS, default_table, forget_cached_prices, pricing_table
from core.errors import ConflictError, ValidationError
from core.team.access import authorize
from core.team.audit import record
from db.engine import session_scope
from db.models import ModelPrice, utcnow

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,119}$")
MAX_RATE = Decimal(100_000)  # USD per 1M tokens or per image: anything above is a typo, not a contract
RATE_LABELS = {"input_per_1m": "input, per 1M tokens", "image_input_per_1m": "image input, per 1M tokens",
               "output_per_1m": "output, per 1M tokens", "per_image": "per image"}


@dataclass(frozen=True)
class PriceRow:
    model: str
    rates: dict[str, Decimal]
    source: str  # "default" (pricing_table.json) or "team" (model_price)
    updated_by: str
    updated_at: datetime | None
    version: int


def list_prices() -> list[PriceRow]:
    """Every priced model: the team's rows first-class, shipped defaults where the team set nothing."""
    with session_scope() as s:
        team = {r.model: r for r in s.execute(sa.select(ModelPrice)).scalars()}
        rows = [PriceRow(m, {k: Decimal(str(v)) for k, v in r.rates.items()}, "team", r.updated_by, r.updated_at,
                         r.version) for m, r in team.items()]
    rows += [PriceRow(m, rates, "default", "", None, 0) for m, rates in default_table().items() if m not in team]
    return sorted(rows, key=lambda r: r.model)


def _clean_rates(rates: dict[str, object]) -> dict[str, str]:
    if not isinstance(rates, dict):
        raise ValidationError(f"Rates are given per kind ({', '.join(RATE_KEYS)}), not as {type(rates).__name__}.")
    unknown = sorted(set(rates) - set(RATE_KEYS))
    if unknown:
        raise ValidationError(f"Unknown rate {', '.join(unknown)}: use {', '.join(RATE_KEYS)}.")
    out: dict[str, str] = {}
    for key, raw in rates.items():
        if raw is None or raw == "":
            continue
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise ValidationError(f"{RATE_LABELS[key].capitalize()}: {str(raw)[:40]!r} is not a number.") from None
        if not value.is_finite() or value < 0 or value > MAX_RATE:
            raise ValidationError(f"{RATE_LABELS[key].capitalize()} must be between 0 and {MAX_RATE:,} USD.")
        out[key] = str(value.normalize() if value else Decimal(0))
    if not out:
        raise ValidationError("Give at least one rate (input, output or per image).")
    return out


def set_price(*, model: str, rates: dict[str, object], editor: str, expected_version: int | None = None) -> PriceRow:
    """Set the team's price for `model` (admin). `expected_version` is the version the form showed (0 = it
    showed the shipped default): a price someone else changed meanwhile is refused, not overwritten."""
    model = (model or "").strip()
    if not MODEL_NAME.match(model):
        raise ValidationError("Model name: letters, digits and . _ : / - only, at most 120 characters "
                              "(as the provider names it, e.g. gpt-image-1).")
    clean = _clean_rates(rates)
    with session_scope() as s:
        role = authorize(s, who=editor, action="price.set")
        s.execute(sa.text("select pg_advisory_xact_lock(hashtext('model_price:' || :m))"), {"m": model})
        row = s.get(ModelPrice, model)
        version = row.version if row is not None else 0
        if expected_version is not None and expected_version != version:
            raise ConflictError(f"The price of {model} was changed by {row.updated_by if row else 'someone'} "
                                "since you opened it; reload to see it.")
        before = {"rates": row.rates if row is not None else _plain(default_table().get(model))}
        if row is None:
            row = ModelPrice(model=model, rates=clean, updated_by=editor, updated_at=utcnow(), version=1)
            s.add(row)
        else:
            row.rates, row.updated_by, row.updated_at, row.version = clean, editor, utcnow(), row.version + 1
        s.flush()
        record(s, who=editor, role=role, action="price.set", entity="price", entity_id=model,
               before=before, after={"rates": clean}, label=model)
        result = PriceRow(model, {k: Decimal(v) for k, v in clean.items()}, "team", editor, row.updated_at,
                          row.version)
    forget_cached_prices()
    return result


def reset_price(*, model: str, editor: str, expected_version: int | None = None) -> bool:
    """Back to the shipped default (admin); False when the team had set nothing for `model`.
    `expected_version` is the version the page showed: a price someone changed meanwhile is refused
    (ConflictError), not thrown away."""
    model = (model or "").strip()
    if not MODEL_NAME.match(model):
        raise ValidationError("Model name: letters, digits and . _ : / - only, at most 120 characters.")
    with session_scope() as s:
        role = authorize(s, who=editor, action="price.set")
        s.execute(sa.text("select pg_advisory_xact_lock(hashtext('model_price:' || :m))"), {"m": model})
        row = s.get(ModelPrice, model)
        if row is None:
            return False
        if expected_version is not None and expected_version != row.version:
            raise ConflictError(f"The price of {model} was changed by {row.updated_by} since you opened it; "
                                "reload to see it.")
        before = {"rates": row.rates}
        s.delete(row)
        record(s, who=editor, role=role, action="price.set", entity="price", entity_id=model, before=before,
               after={"rates": _plain(default_table().get(model))}, label=f"{model} back to the default")
    forget_cached_prices()
    return True


def effective_rates(*, model: str) -> dict[str, Decimal] | None:
    return pricing_table().get(model)


def _plain(rates: dict[str, Decimal] | None) -> dict[str, str] | None:
    return None if rates is None else {k: str(v) for k, v in rates.items()}
