"""Activity: every AI call, what it cost, and what failed; reviewer metrics per person and day."""
from datetime import date, timedelta

import plotly.graph_objects as go
import streamlit as st

from core.ai import ai_calls
from core.experiment_results import production_record
from core.text import escape_markdown as md
from pages._common import show_flashes, sidebar
from pages._prices import prices_view
from pages._reviewers import reviewer_metrics_view

who = sidebar()
st.title("📈 Activity")
show_flashes()

with st.container(border=True):
    c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
    period = c1.date_input("Period", value=(date.today() - timedelta(days=30), date.today()), key="act_period")
    functions = c2.multiselect("Function", ai_calls.distinct_values("function"), key="act_functions")
    statuses = c3.multiselect("Status", ["succeeded", "failed", "refused", "running"], key="act_statuses")
    models = c4.multiselect("Model", ai_calls.distinct_values("model"), key="act_models")
since, until = (period if isinstance(period, tuple) and len(period) == 2 else (None, None))
flt = ai_calls.CallFilter(tuple(functions), tuple(statuses), tuple(models), since, until)

n_calls, total_cost, failed = ai_calls.grand_total(flt=flt)
m1, m2, m3 = st.columns(3)
m1.metric("Calls", n_calls)
m2.metric("Spend (USD)", f"${total_cost:.4f}")
m3.metric("Failed or refused", failed)
prices_view(who=who)

if n_calls == 0:
    st.info("No AI calls in this period yet. Suggest a name on the Characters page or try a prompt on the Prompts page.")
    reviewer_metrics_view(since=since, until=until)
    st.stop()

series = ai_calls.spend_series(flt=flt)
show_spend = total_cost > 0
fig = go.Figure()
for fn in sorted({r["function"] for r in series}):
    rows = [r for r in series if r["function"] == fn]
    fig.add_bar(x=[r["day"] for r in rows], y=[float(r["cost_usd"]) if show_spend else r["calls"] for r in rows],
                name=fn, customdata=[r["calls"] for r in rows], width=86_400_000 * 0.8,  # one day, in ms
                hovertemplate="%{x|%Y-%m-%d}<br>%{y}<br>%{customdata} calls")
fig.update_layout(
    barmode="stack", height=300, margin=dict(l=10, r=10, t=30, b=10),
    xaxis=dict(type="date", tickformat="%b %d", dtick=86_400_000,
               range=[min(r["day"] for r in series) - timedelta(days=1.5),
                      max(r["day"] for r in series) + timedelta(days=1.5)]),  # one day of data stays a bar
    title="Spend per day (USD)" if show_spend else "Calls per day (no spend in this period: offline calls are free)",
    yaxis=dict(rangemode="tozero", tickformat="$.4f" if show_spend else "d"),
)
st.plotly_chart(fig, width="stretch")

by = st.radio("Totals by", list(ai_calls.GROUPINGS), horizontal=True, key="act_by")
totals = ai_calls.totals(by=by, flt=flt)
st.dataframe(
    [{by: (t["key"].strftime("%Y-%m-%d") if hasattr(t["key"], "strftime") else t["key"]), "calls": t["calls"],
      "failed": t["failed"], "cost (USD)": float(t["cost_usd"]), "tokens in": t["tokens_in"],
      "tokens out": t["tokens_out"], "images": t["images"], "median ms": t["p50_ms"]} for t in totals],
    hide_index=True, width="stretch",
    column_config={"cost (USD)": st.column_config.NumberColumn(format="$%.6f")},
)

calls = ai_calls.list_calls(flt=flt)
tab_log, tab_fail = st.tabs(["Call log", f"Failures ({failed})"])
with tab_log:
    st.dataframe(
        [{"when": c.created_at, "function": c.function, "status": c.status, "phase": c.phase, "provider": c.provider,
          "model": c.model, "template": c.template_name, "version": c.template_version, "layer": c.template_layer,
          "tokens in": c.tokens_in, "tokens out": c.tokens_out, "images": c.images,
          "cost (USD)": float(c.cost_usd) if c.cost_usd is not None else None, "ms": c.duration_ms,
          "attempts": c.attempts, "by": c.requested_by, "subject": f"{c.subject_type or ''} {c.subject_id or ''}".strip(),
          "prompt hash": (c.prompt_hash or "")[:12]} for c in calls],
        hide_index=True, width="stretch",
        column_config={"cost (USD)": st.column_config.NumberColumn(format="$%.6f")},
    )
with tab_fail:
    failures = [c for c in calls if c.status != "succeeded"]
    if not failures:
        st.success("No failures in this period.")
    for c in failures:
        with st.expander(f"#{c.id} {c.function} · {c.status} in {c.phase} · {c.created_at:%Y-%m-%d %H:%M}"):
            st.error(md(c.error or "no message"))
            st.json({"provider": c.provider, "model": c.model, "attempts": c.attempts, "steps": c.steps,
                     "template": c.template_name, "layer": c.template_layer, "version": c.template_version})

reviewer_metrics_view(since=since, until=until)

st.subheader("Template versions in production")
record = production_record()
st.caption("Per variation_prompt version used by generation runs, from real review decisions "
           "(experiment images are not counted). Keeps building after a version is activated.")
st.dataframe([{"version": r.label, "images": r.images, "approved": r.approved, "rejected": r.rejected,
               "approval rate": r.approval_rate, "cost (USD)": float(r.cost_usd),
               "per approved image": float(r.cost_per_approved) if r.cost_per_approved is not None else None}
              for r in record], hide_index=True, width="stretch", column_config={
    "approval rate": st.column_config.NumberColumn(format="percent"),
    "cost (USD)": st.column_config.NumberColumn(format="$%.4f"),
    "per approved image": st.column_config.NumberColumn(format="$%.4f")})
