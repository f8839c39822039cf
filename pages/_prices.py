"""Activity → Prices: what each model costs the team (shipped defaults, or the team's own rates set by an admin)."""
from __future__ import annotations

import streamlit as st

from core.ai import prices
from pages._common import flash, report, why_not

NEW = "➕ another model…"


def prices_view(*, who: str | None) -> None:
    rows = prices.list_prices()
    with st.expander(f"💲 Prices ({len(rows)} models) — what costs above are computed with"):
        st.dataframe(
            [{"model": r.model, **{prices.RATE_LABELS[k]: float(r.rates[k]) if k in r.rates else None
                                   for k in prices.RATE_KEYS},
              "source": "team" if r.source == "team" else "shipped default",
              "changed by": r.updated_by or "", "changed": r.updated_at} for r in rows],
            hide_index=True, width="stretch",
            column_config={label: st.column_config.NumberColumn(format="$%.4f") for label in prices.RATE_LABELS.values()},
        )
        refused = why_not(who, "price.set", nameless="Enter your name to change prices.")
        if refused:
            st.caption(f"🔒 {refused}")
            return
        by_model = {r.model: r for r in rows}
        pick = st.selectbox("Set the team's price for", [*by_model, NEW], key="price_model")
        model = st.text_input("Model name (as the provider names it)", key="price_new_model",
                              max_chars=120) if pick == NEW else pick
        current = by_model.get(model)
        cols = st.columns(len(prices.RATE_KEYS))
        values = {}
        for col, key in zip(cols, prices.RATE_KEYS):
            shown = current.rates.get(key) if current else None
            values[key] = col.number_input(prices.RATE_LABELS[key], min_value=0.0, max_value=float(prices.MAX_RATE),
                                           value=float(shown) if shown is not None else None, step=0.01,
                                           format="%.4f", key=f"price_{key}_{model}")
        b1, b2 = st.columns(2)
        if b1.button("Save price", type="primary", key="price_save", disabled=not model):
            try:
                prices.set_price(model=model, rates=values, editor=who,
                                 expected_version=current.version if current else 0)
                flash(f"Price of {model} saved: calls from now on use it (running workers within "
                      f"{prices.PRICES_TTL_S:.0f} s).")
                st.rerun()
            except Exception as err:
                report(err)
        if current is not None and current.source == "team" and b2.button("Back to the shipped default",
                                                                           key="price_reset"):
            try:
                prices.reset_price(model=model, editor=who, expected_version=current.version)
                flash(f"{model} is priced by the shipped default again.")
                st.rerun()
            except Exception as err:
                report(err)
