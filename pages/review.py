"""Review: coverage grid (characters × slots), slot comparison, claimed keyboard queue, adjudication, agreement,
export."""
import html

import streamlit as st

from core import references, review, styles
from core.errors import WorkbenchError
from core.shots import shot_list
from core.text import escape_markdown as md
from pages._common import flash, grid_thumbnail, media_path, report, show_flashes, sidebar
from pages._review_queue import adjudicate_view, decision_form, queue_view, refused, release_claims
from pages._reviewers import reviewers_view

editor = sidebar()
st.title("🔍 Review")
show_flashes()
# a slot dialog stays open only within the run that opened it (and its own reruns): any full run closes it,
# unless the grid's watcher asked to reopen it because its slot's newest attempt changed
st.session_state.pop("rv_dialog_open", None)
reopen = st.session_state.pop("rv_reopen", None)

SLOTS = shot_list()
STATUS_ICON = {"pending": "⏳", "generating": "🔄", "completed": "", "failed": "❌", "cancelled": "⛔"}
REVIEW_BADGE = {"approved": "✅", "rejected": "👎", "unreviewed": "🔎", "disputed": "⚖️"}  # ten cells fit at 1024 px
ELLIPSIS = "overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
ACTIVE = ("pending", "generating")
GRID_LIVE_S = 2  # while a cell on the page is generating
GRID_IDLE_S = 15  # otherwise: notices runs other editors start, without loading the database

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
n_disputed = counts.get("disputed", 0)
views = {"grid": "Coverage grid", "queue": f"Review queue ({n_queue})", "adjudicate": f"Adjudicate ({n_disputed})",
         "reviewers": "Reviewers"}
if not n_disputed and review.votes_required() == 1 and st.session_state.get("rv_view") != "adjudicate":
    del views["adjudicate"]  # single review: nothing is ever disputed
view = st.segmented_control("View", list(views), key="rv_view", default="grid", required=True,
                            format_func=views.get, label_visibility="collapsed")
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
    if u2.button("Undo", key="rv_undo", disabled=not editor or last.reviewer != editor,
                 help="Put that image back the way it was"):
        try:
            review.undo(decision=last, who=editor)
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


@st.dialog("Slot review", width="large", on_dismiss="rerun")
def slot_dialog(character_id: int, name: str, slot_key: str) -> None:
    """Attempts beside the references. While the newest attempt is generating, the grid's watcher keeps an
    eye on it and reopens the dialog with the image once it lands (or fails)."""
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
    decision_form(latest, who=editor, key_prefix="dlg")
    live = latest.status in ACTIVE
    if live:
        st.caption(f"⏳ Attempt {latest.attempt} is {latest.status}: this view refreshes by itself.")
    st.session_state["rv_dialog_open"] = {"args": (character_id, name, slot_key),
                                          "latest": (latest.id, latest.status) if live else None}


def _fingerprint(page: review.CoveragePage) -> tuple:
    return tuple((row.character_id, key, c.variation_id, c.status, c.review_status)
                 for row in page.rows for key, c in sorted(row.cells.items()))


def _watch_grid(page: review.CoveragePage) -> None:
    """Redraw the grid when a cell on it changes (a regenerated slot finishes, a run starts or another reviewer
    decides): a small fragment re-reads the page's cells on a timer and asks for a full rerun only on a change.
    It stands still while a slot dialog is open (a full rerun would close it; the dialog refreshes itself)."""
    st.session_state["rv_grid_fp"] = _fingerprint(page)
    st.session_state["rv_watch_skip"] = True  # the call during this run only arms the timer
    live = any(c.status in ACTIVE for row in page.rows for c in row.cells.values())

    @st.fragment(run_every=GRID_LIVE_S if live else GRID_IDLE_S)
    def watch() -> None:
        if st.session_state.pop("rv_watch_skip", False):
            return
        dialog = st.session_state.get("rv_dialog_open")
        if dialog:  # only the open dialog's slot: a full rerun for anything else would close the dialog
            if dialog["latest"] is not None:
                character_id, _, slot_key = dialog["args"]
                tries = review.attempts(character_id=character_id, slot_key=slot_key)
                if tries and (tries[0].id, tries[0].status) != dialog["latest"]:
                    st.session_state["rv_reopen"] = dialog["args"]
                    st.rerun()
            return
        now = review.coverage_page(filters=filters, page=st.session_state.get("rv_page_keep", 1))
        if _fingerprint(now) != st.session_state.get("rv_grid_fp"):
            st.rerun()

    watch()


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
    bulk_refused = refused(editor, "review.bulk")
    if p3.button(f"Approve all {len(on_page)} unreviewed shown", disabled=bool(bulk_refused) or not on_page,
                 key="bulk", help=bulk_refused or "Approves the unreviewed images of the characters on this page "
                 "(images in another reviewer's queue are left to them)."):
        try:
            n = review.bulk_approve(variation_ids=on_page, reviewer=editor)
            flash(f"Approved {n} image(s).")
            st.rerun()
        except Exception as err:
            report(err)
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
    if reopen:
        slot_dialog(*reopen)
    _watch_grid(page)


if view != "queue":
    release_claims(editor)  # left the queue: the held images go back to the others at once
if view == "queue":
    queue_view(who=editor, filters=filters, n_queue=n_queue)
elif view == "adjudicate":
    adjudicate_view(who=editor)
elif view == "reviewers":
    reviewers_view()
else:
    grid_view()
