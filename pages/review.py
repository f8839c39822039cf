"""Review: coverage grid (characters × slots), slot comparison, keyboard queue, export."""
import html

import streamlit as st

from core import generation, references, review, styles
from core.vectors import drift
from core.errors import WorkbenchError
from core.shots import shot_list
from core.text import escape_markdown as md
from pages._common import flash, grid_thumbnail, media_path, report, show_flashes, sidebar

editor = sidebar()
st.title("🔍 Review")
show_flashes()

SLOTS = shot_list()
STATUS_ICON = {"pending": "⏳", "generating": "🔄", "completed": "", "failed": "❌", "cancelled": "⛔"}
REVIEW_BADGE = {"approved": "✅", "rejected": "👎", "unreviewed": "🔎"}  # icons: ten cells fit at 1024 px
ELLIPSIS = "overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
QUEUE_LIST = 50  # queue entries listed under the current image

style_list = styles.list_styles()
style_names = {s.id: s.name for s in style_list}


def _first_page() -> None:
    st.session_state["rv_page_keep"] = 1
    st.session_state["queue_pos"] = 0


f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
search = f1.text_input("Character", key="rv_search", placeholder="filter by name", on_change=_first_page,
                       max_chars=review.SEARCH_MAX)
style_id = f2.selectbox("Style", [None] + list(style_names), key="rv_style", on_change=_first_page,
                        format_func=lambda s: "All styles" if s is None else style_names[s])
state = f3.selectbox("Review state", [None, *review.REVIEW_STATES], key="rv_state", on_change=_first_page,
                     format_func=lambda s: "Any" if s is None else s)
run_txt = f4.text_input("Run #", key="rv_run", placeholder="any", on_change=_first_page)
run_id = int(run_txt) if run_txt.strip().isdigit() else None
if run_txt.strip() and run_id is None:
    f4.caption(f":red[“{md(run_txt.strip()[:20])}” is not a run number; showing every run.]")
try:
    filters = review.ReviewFilter(search=search, style_id=style_id, review_state=state, run_id=run_id)
except WorkbenchError as err:
    report(err)
    st.stop()

counts = review.review_counts(filters=filters)
n_queue = counts.get("unreviewed", 0)
# a keyed switch, not st.tabs: it keeps the editor's view across reruns, and the page knows which view is
# showing, so the queue's keyboard shortcuts exist only while the queue is on screen
view = st.segmented_control("View", ["grid", "queue"], key="rv_view", default="grid", required=True,
                            format_func={"grid": "Coverage grid", "queue": f"Review queue ({n_queue})"}.get,
                            label_visibility="collapsed")
if not counts:
    if not (search or style_id or state or run_id):
        st.info("Nothing to review yet. Open a character and click **Generate variations** (or generate for the "
                "whole cast from the Characters page); images appear here as they finish.")
    else:
        st.info("No characters match these filters.")
    st.stop()

last = st.session_state.get("rv_last_decision")
if last is not None:
    u1, u2 = st.columns([5, 1])
    u1.caption(f"Last decision: **{last.decision}** · {md(last.label)}")
    if u2.button("Undo", key="rv_undo", disabled=not editor, help="Put that image back the way it was"):
        try:
            review.undo(decision=last)
            del st.session_state["rv_last_decision"]
            flash(f"Undone: {md(last.label)} is {last.previous[0]} again.")
            st.rerun()
        except Exception as err:
            report(err)

prepared = st.session_state.get("rv_export")
if prepared is not None and (prepared["filters"] != filters
                             or prepared["fingerprint"] != review.approved_fingerprint(filters=filters)):
    del st.session_state["rv_export"]  # a download of another set than the one on screen would mislead
    prepared = None
    st.caption("The approved set or the filters changed since the export was prepared: prepare it again.")
e1, e2 = st.columns([2, 5])
if e1.button("Prepare export", key="prep_export", help="A zip of the approved images of every character "
             "matching the filters, with manifest.csv / manifest.json"):
    fingerprint = review.approved_fingerprint(filters=filters)
    data, n = review.export_approved(filters=filters)
    prepared = st.session_state["rv_export"] = {"filters": filters, "fingerprint": fingerprint, "data": data, "n": n}
if prepared is not None:
    e2.download_button(f"⬇️ Download zip ({prepared['n']} approved images + manifest)", data=prepared["data"],
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
        done = review.decide(variation_id=variation_id, decision=decision, reviewer=editor, reason_codes=reasons,
                             note=note)
        st.session_state["rv_last_decision"] = done
        flash(f"Marked {decision}: {md(done.label)}.")
        st.rerun()
    except Exception as err:
        report(err)


def grid_view() -> None:
    page = review.coverage_page(filters=filters, page=st.session_state.get("rv_page_keep", 1))
    p1, p2, p3 = st.columns([2, 2, 3])
    # the page number lives under a plain key too: a widget's state is dropped while the queue view shows;
    # clamped, as the cast may have shrunk since the number was typed
    st.session_state["rv_page_keep"] = st.session_state["rv_page"] = page.page
    p1.number_input(f"Page (of {page.pages})", min_value=1, max_value=page.pages, step=1, key="rv_page",
                    on_change=lambda: st.session_state.update(rv_page_keep=st.session_state["rv_page"]))
    p2.caption(f"{page.total_characters} character(s) · {review.PAGE_SIZE} per page")
    on_page = review.unreviewed_in_order(page.rows)
    if p3.button(f"Approve all {len(on_page)} unreviewed shown", disabled=not editor or not on_page, key="bulk",
                 help="Approves the unreviewed images of the characters on this page."):
        n = review.bulk_approve(variation_ids=on_page, reviewer=editor)
        flash(f"Approved {n} image(s).")
        st.rerun()
    header = st.columns([2] + [1] * len(SLOTS), gap="small")
    header[0].caption("character")
    for col, slot in zip(header[1:], SLOTS):  # short headers on one line, the full label as the tooltip
        col.markdown(f'<span title="{html.escape(slot.label)}" style="font-size:0.8rem;white-space:nowrap">'
                     f'{html.escape(slot.header)}</span>', unsafe_allow_html=True)
    st.caption("🔎 to review · ✅ approved · 👎 rejected · ⏳ 🔄 in progress · ❌ failed — hover a header for the "
               "full shot name, a cell for its state")
    for row in page.rows:
        cols = st.columns([2] + [1] * len(SLOTS), gap="small")
        # one line each, cut with an ellipsis (the full text on hover): a long name never breaks mid-word
        cols[0].markdown(f'<div title="{html.escape(row.name)}" style="{ELLIPSIS}font-weight:600">'
                         f'{html.escape(row.name)}</div><div style="{ELLIPSIS}color:gray;font-size:0.85rem">'
                         f'{html.escape(row.style_name or "no style")}</div>', unsafe_allow_html=True)
        for col, slot in zip(cols[1:], SLOTS):
            cell = row.cells.get(slot.key)
            if cell is None:
                col.caption("—")
                continue
            thumb = grid_thumbnail(cell.thumb_path)
            if thumb:  # an <img> with a data URI: st.image stats and decodes every picture on every rerun
                col.markdown(f'<img src="{thumb}" alt="{html.escape(row.name)} · {html.escape(slot.label)}" '
                             'style="width:100%;border-radius:4px">', unsafe_allow_html=True)
            label = f"{STATUS_ICON.get(cell.status, '')}{REVIEW_BADGE[cell.review_status] if cell.status == 'completed' else ''}"
            if col.button(label or "open", key=f"cell_{cell.variation_id}", type="tertiary", help=md(f"{row.name} · {slot.label}: "
                          f"{cell.status}, {cell.review_status}" + (f" ({cell.error})" if cell.error else ""))):
                slot_dialog(row.character_id, row.name, slot.key)


def queue_view() -> None:
    if not n_queue:
        st.success("Queue empty: every completed image shown here has been reviewed.")
        return
    o1, o2 = st.columns([3, 1])
    order = o1.radio("Order", list(review.QUEUE_ORDERS), format_func=review.QUEUE_ORDERS.get, horizontal=True,
                     key="queue_order", on_change=lambda: st.session_state.update(queue_pos=0),
                     help="Identity drift = how far the image is from the character's references, as a "
                          "learned image model sees them.")
    off_only = o2.toggle("Only off-model", key="queue_off_model",
                         on_change=lambda: st.session_state.update(queue_pos=0),
                         help=f"Drift above {drift.off_model_threshold():.2f} (calibrated by bench/visual.py).")
    total = review.queue_size(filters=filters, off_model_only=True) if off_only else n_queue
    if not total:
        st.success("No unreviewed image is flagged off-model.")
        return
    pos = max(0, min(st.session_state.get("queue_pos", 0), total - 1))
    ahead = review.queue_slice(filters=filters, order=order, offset=pos, limit=QUEUE_LIST, off_model_only=off_only)
    if not ahead:  # the queue shrank since the count (another editor): show its last item
        pos = max(0, total - 1 - QUEUE_LIST)
        ahead = review.queue_slice(filters=filters, order=order, offset=pos, limit=QUEUE_LIST,
                                   off_model_only=off_only)
        if not ahead:
            st.success("Queue empty: every completed image shown here has been reviewed.")
            return
    item = ahead[0]
    v = review.get_variation(variation_id=item.variation_id)
    st.caption(f"{pos + 1} of {total} · keys: **A** approve · **X** reject · **J** next · **K** previous")
    q1, q2 = st.columns([2, 1])
    q1.markdown(f"**{md(item.label)}** · {review.drift_label(v.drift_score)}")
    if media_path(v.path):
        q1.image(media_path(v.path), caption=md(item.label), width="stretch")
    with q2:
        refs = references.list_references(character_id=v.character_id)
        if refs and media_path(refs[0].thumb_path):
            st.image(media_path(refs[0].thumb_path), caption="reference", width="stretch")
        decision_form(v, key_prefix="q")
        n1, n2 = st.columns(2)
        if n1.button("Previous", key="q_prev", shortcut="K", disabled=pos == 0):
            st.session_state["queue_pos"] = pos - 1
            st.rerun()
        if n2.button("Next", key="q_next", shortcut="J", disabled=pos >= total - 1):
            st.session_state["queue_pos"] = pos + 1
            st.rerun()
    with st.expander(f"Coming up (next {len(ahead)} of {total})"):
        st.dataframe([{"#": pos + i + 1, "character": it.character_name, "slot": it.slot_key,
                       "attempt": it.attempt, "drift": it.drift_score, "off-model": drift.is_off_model(it.drift_score)}
                      for i, it in enumerate(ahead)],
                     hide_index=True, width="stretch")


if view == "queue":
    queue_view()
else:
    grid_view()
