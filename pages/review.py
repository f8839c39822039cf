"""Review: coverage grid (characters × slots), slot comparison, keyboard queue, export."""
import streamlit as st

from core import drift, generation, references, review, styles
from core.shots import shot_list
from core.text import escape_markdown as md
from pages._common import flash, media_path, report, show_flashes, sidebar

editor = sidebar()
st.title("🔍 Review")
show_flashes()

SLOTS = shot_list()
STATUS_ICON = {"pending": "⏳", "generating": "🔄", "completed": "", "failed": "❌", "cancelled": "⛔"}
REVIEW_BADGE = {"approved": "✅", "rejected": "👎", "unreviewed": "review"}

style_list = styles.list_styles()
style_names = {s.id: s.name for s in style_list}
f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
search = f1.text_input("Character", key="rv_search", placeholder="filter by name")
style_id = f2.selectbox("Style", [None] + list(style_names), key="rv_style",
                        format_func=lambda s: "All styles" if s is None else style_names[s])
state = f3.selectbox("Review state", [None, "unreviewed", "approved", "rejected"], key="rv_state",
                     format_func=lambda s: "Any" if s is None else s)
run_txt = f4.text_input("Run #", key="rv_run", placeholder="any")
run_id = int(run_txt) if run_txt.strip().isdigit() else None

grid = review.coverage(style_id=style_id, review_state=state, run_id=run_id, search=search)
if not grid:
    if not (search or style_id or state or run_id):
        st.info("Nothing to review yet. Open a character and click **Generate variations** (or generate for the "
                "whole cast from the Characters page); images appear here as they finish.")
    else:
        st.info("No characters match these filters.")
    st.stop()

a1, a2, a3 = st.columns([2, 2, 3])
unreviewed = review.unreviewed_in_order(grid)
if a1.button(f"Approve all {len(unreviewed)} unreviewed shown", disabled=not editor or not unreviewed, key="bulk"):
    n = review.bulk_approve(variation_ids=unreviewed, reviewer=editor)
    flash(f"Approved {n} image(s).")
    st.rerun()
if a2.button("Prepare export of approved set", key="prep_export"):
    data, n = review.export_approved(character_ids=[r.character_id for r in grid])
    st.session_state["export"] = (data, n)
if "export" in st.session_state:
    data, n = st.session_state["export"]
    a3.download_button(f"⬇️ Download zip ({n} approved images + manifest)", data=data,
                       file_name="approved-variations.zip", mime="application/zip", key="dl_export")


@st.dialog("Slot review", width="large")
def slot_dialog(character_id: int, name: str, slot_key: str) -> None:
    tries = review.attempts(character_id=character_id, slot_key=slot_key)
    st.subheader(f"{md(name)} · {slot_key}")
    refs = references.list_references(character_id=character_id)
    if refs:
        st.caption("Reference images")
        rcols = st.columns(6)  # fixed widths: one reference must not fill the dialog
        for col, ref in zip(rcols, refs[:6]):
            if media_path(ref.thumb_path):
                col.image(media_path(ref.thumb_path), width="stretch")
    st.caption(f"Attempts (newest first): {len(tries)}")
    acols = st.columns(3)
    for col, v in zip(acols, tries[:3]):
        with col.container(border=True):
            if media_path(v.path):
                st.image(media_path(v.path), width="stretch")
            st.caption(f"attempt {v.attempt} · run #{v.run_id} · {v.status} · {v.review_status}"
                       + (f" · {', '.join(v.reason_codes)}" if v.reason_codes else ""))
            if v.error:
                st.caption(f":red[{md(v.error)}]")
    latest = tries[0] if tries else None
    if latest is None:
        return
    with st.expander("Prompt of the latest attempt"):
        st.code(latest.rendered_prompt or "(not built yet)", language=None, wrap_lines=True)
    decision_form(latest, key_prefix="dlg")


def decision_form(v, *, key_prefix: str) -> None:
    codes = list(generation.REASON_CODES)
    reasons = st.multiselect("Reasons (for a rejection)", codes, default=v.reason_codes,
                             format_func=generation.REASON_CODES.get, key=f"{key_prefix}_reasons_{v.id}")
    note = st.text_input("Note", value=v.review_note, key=f"{key_prefix}_note_{v.id}")
    c1, c2, c3 = st.columns(3)
    disabled = not editor or v.status != "completed"
    if c1.button("Approve", type="primary", disabled=disabled, key=f"{key_prefix}_approve_{v.id}", shortcut="A"):
        _decide(v.id, "approved", [], note)
    if c2.button("Reject", disabled=disabled, key=f"{key_prefix}_reject_{v.id}", shortcut="X"):
        _decide(v.id, "rejected", reasons, note)
    if c3.button("Regenerate slot", disabled=not editor, key=f"{key_prefix}_regen_{v.id}",
                 help="A new attempt; this one's rejection reasons go into its prompt."):
        try:
            generation.regenerate(run_id=v.run_id, requested_by=editor, slot_keys=[v.slot_key])
            flash(f"{v.slot_key}: new attempt queued.")
            st.rerun()
        except Exception as err:
            report(err)


def _decide(variation_id: int, decision: str, reasons: list[str], note: str) -> None:
    try:
        review.review(variation_id=variation_id, decision=decision, reviewer=editor, reason_codes=reasons, note=note)
        flash(f"Marked {decision}.")
        st.rerun()
    except Exception as err:
        report(err)


tab_grid, tab_queue = st.tabs(["Coverage grid", f"Review queue ({len(unreviewed)})"], key="rv_tabs", on_change="rerun")
with tab_grid:
    header = st.columns([2] + [1] * len(SLOTS))
    header[0].caption("character")
    for col, slot in zip(header[1:], SLOTS):
        col.caption(slot.label)
    for row in grid:
        cols = st.columns([2] + [1] * len(SLOTS))
        cols[0].markdown(f"**{md(row.name)}**")
        cols[0].caption(md(row.style_name or "no style"))
        for col, slot in zip(cols[1:], SLOTS):
            cell = row.cells.get(slot.key)
            if cell is None:
                col.caption("—")
                continue
            if media_path(cell.thumb_path):
                col.image(media_path(cell.thumb_path), width="stretch")
            label = f"{STATUS_ICON.get(cell.status, '')}{REVIEW_BADGE[cell.review_status] if cell.status == 'completed' else ''}"
            if col.button(label or "open", key=f"cell_{cell.variation_id}", help=md(f"{row.name} · {slot.label}: "
                          f"{cell.status}, {cell.review_status}" + (f" ({cell.error})" if cell.error else ""))):
                slot_dialog(row.character_id, row.name, slot.key)

with tab_queue:
    if not unreviewed:
        st.success("Queue empty: every completed image shown here has been reviewed.")
    else:
        o1, o2 = st.columns([3, 1])
        order = o1.radio("Order", list(review.QUEUE_ORDERS), format_func=review.QUEUE_ORDERS.get, horizontal=True,
                         key="queue_order", on_change=lambda: st.session_state.update(queue_pos=0),
                         help="Identity drift = how far the image is from the character's references, as a "
                              "learned image model sees them.")
        off_only = o2.toggle("Only off-model", key="queue_off_model",
                             on_change=lambda: st.session_state.update(queue_pos=0),
                             help=f"Drift above {drift.off_model_threshold():.2f} (calibrated by bench/visual.py).")
        unreviewed = review.unreviewed_in_order(grid, order=order, off_model_only=off_only)
        if not unreviewed:
            st.success("No unreviewed image is flagged off-model.")
            st.stop()
        pos = min(st.session_state.get("queue_pos", 0), len(unreviewed) - 1)
        v = review.get_variation(variation_id=unreviewed[pos])
        name = next(r.name for r in grid if r.character_id == v.character_id)
        st.caption(f"{pos + 1} of {len(unreviewed)} · keys: **A** approve · **X** reject · **J** next · **K** previous")
        q1, q2 = st.columns([2, 1])
        q1.markdown(review.drift_label(v.drift_score))
        if media_path(v.path):
            q1.image(media_path(v.path), caption=f"{md(name)} · {v.slot_key} · attempt {v.attempt}", width="stretch")
        with q2:
            refs = references.list_references(character_id=v.character_id)
            if refs and media_path(refs[0].thumb_path):
                st.image(media_path(refs[0].thumb_path), caption="reference", width="stretch")
            decision_form(v, key_prefix="q")
            n1, n2 = st.columns(2)
            if n1.button("Previous", key="q_prev", shortcut="K", disabled=pos == 0):
                st.session_state["queue_pos"] = pos - 1
                st.rerun()
            if n2.button("Next", key="q_next", shortcut="J", disabled=pos >= len(unreviewed) - 1):
                st.session_state["queue_pos"] = pos + 1
                st.rerun()
        with st.expander(f"Whole queue ({len(unreviewed)}), sortable by drift"):
            names = {r.character_id: r.name for r in grid}
            cells = {c.variation_id: (r.character_id, c) for r in grid for c in r.cells.values()}
            st.dataframe([{"#": i + 1, "character": names[cells[vid][0]], "slot": cells[vid][1].slot_key,
                           "drift": cells[vid][1].drift_score,
                           "off-model": drift.is_off_model(cells[vid][1].drift_score)}
                          for i, vid in enumerate(unreviewed)],
                         hide_index=True, width="stretch")
