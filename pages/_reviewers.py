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
    since = None if days is None else datetime.combine(datetime.now(timezone.utc).date() - timedelta(days=days),
                                                       time.min, tzinfo=timezone.utc)
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


def reviewer_metrics_view(*, since: date | None, until: date | None) -> None:
    """Activity page: per reviewer and day — images reviewed, median seconds per decision, approval rate,
    reasons used (aggregated in SQL by core.review_metrics)."""
    from core import review_metrics

    st.subheader("Reviewers")
    until = until or datetime.now(timezone.utc).date()  # the rows are UTC days, whatever the server's zone
    since = since or until - timedelta(days=30)
    rows = review_metrics.per_reviewer_day(since=since, until=until)
    if not rows:
        st.caption("No review decisions in this period.")
        return
    st.caption("Per reviewer and day (UTC). Seconds per decision run from when the image was shown (or claimed) "
               "to the decision; bulk decisions are counted but not timed.")
    st.dataframe([{"day": r.day, "reviewer": r.reviewer, "images reviewed": r.reviewed,
                   "median s / decision": r.median_seconds, "approval rate": r.approval_rate,
                   "adjudicated": r.adjudicated,
                   "reasons used": ", ".join(f"{code} ×{n}" for code, n in r.reasons.items())} for r in rows],
                 hide_index=True, width="stretch",
                 column_config={"approval rate": st.column_config.NumberColumn(format="percent"),
                                "median s / decision": st.column_config.NumberColumn(format="%.1f")})
