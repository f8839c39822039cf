"""Review page part: how much reviewers agree (per pair and per reason code), from core.review_agreement."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

from core import review, review_agreement


def _rows(groups: list[review_agreement.Agreement], what: str) -> list[dict]:
    return [{what: g.key, "images both voted on": g.items, "agreement": g.percent, "Cohen's kappa": g.kappa}
            for g in groups]


def reviewers_view() -> None:
    k = review.votes_required()
    st.caption(f"Double review: each image needs **{k}** independent vote(s)"
               + ("" if k > 1 else " (set REVIEW_VOTES_REQUIRED=2 to measure agreement on every image)")
               + ". Agreement compares every two reviewers' votes on the same image; kappa corrects for the "
               "agreement chance alone would give (1 = perfect, 0 = chance, — = undefined: one label only).")
    days = st.selectbox("Period", [7, 30, 365, None], index=1, key="rv_agree_days",
                        format_func=lambda d: "All time" if d is None else f"Last {d} days")
    since = None if days is None else datetime.combine(date.today() - timedelta(days=days), time.min,
                                                       tzinfo=timezone.utc)
    pairs, codes = review_agreement.agreement(since=since)
    fmt = {"agreement": st.column_config.NumberColumn(format="percent"),
           "Cohen's kappa": st.column_config.NumberColumn(format="%.3f")}
    st.markdown("**Per reviewer pair** (approve / reject)")
    if pairs:
        st.dataframe(_rows(pairs, "reviewers"), hide_index=True, width="stretch", column_config=fmt)
    else:
        st.info("No image has votes from two reviewers yet.")
    st.markdown("**Per reason code** (given or not, pooled over reviewer pairs)")
    if codes:
        st.dataframe(_rows(codes, "reason"), hide_index=True, width="stretch", column_config=fmt)
    else:
        st.caption("No reason code was used on a doubly reviewed image yet.")
