"""The cluster map: a cached UMAP projection per embedding space, selection → thumbnail grid → actions.

Projections are computed by a background job (core.vectors.projection); this page only reads stored
coordinates, so a cached 10k-point map renders in well under the 2 s budget.
"""
import streamlit as st

from core import review, tags
from core.vectors import map_view, projection
from core.generation import REASON_CODES
from core.vectors.projection import ProjectionParams
from core.text import escape_markdown as md
from pages._common import flash, media_path, report, show_flashes, sidebar, why_not

GRID_PER_PAGE = 24
METHOD_LABELS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
GRID_COLUMNS = 6
SEL_KEY = "map_selection"  # {"sig": figure signature, "ids": [...]}: survives a redrawn figure

editor = sidebar()


def _why_not(action: str) -> str | None:
    return why_not(editor, action)


st.title("🗺️ Map")
show_flashes()

sets = projection.available_sets()
if not sets:
    st.info("No embeddings yet: embed the cast on the Embeddings page, then compute the map here.")
    st.page_link("pages/embeddings.py", label="Go to Embeddings", icon="🧬")
    st.stop()


def _set_label(i: int) -> str:
    s = sets[i]
    return f"{projection.SUBJECT_TYPES.get(s['subject_type'], s['subject_type'])} · {s['space']} ({s['count']:,})"


c_set, c_colour, c_find = st.columns([2, 1, 2])
chosen = sets[c_set.selectbox("Map of", range(len(sets)), format_func=_set_label, key="map_set")]
space, subject_type = chosen["space"], chosen["subject_type"]
color_by = c_colour.selectbox("Colour by", list(map_view.COLOR_BY[subject_type]), key=f"map_colour_{subject_type}")

latest = projection.latest(space=space, subject_type=subject_type)
cur = projection.current(space=space, subject_type=subject_type)
pending = projection.job_pending(space=space, subject_type=subject_type)

# ---------------------------------------------------------------- parameters and recompute
with st.expander("Map parameters and recompute", expanded=cur is None and not pending):
    base = cur or latest
    p1, p2, p3 = st.columns(3)
    n_neighbors = p1.slider("n_neighbors", *projection.N_NEIGHBORS_RANGE,
                            value=int(base.n_neighbors if base else projection.DEFAULT_PARAMS["n_neighbors"]),
                            key="map_nn", help="How many neighbours shape each point's place: small values keep "
                                               "local detail, large values show the overall layout.")
    min_dist = p2.slider("min_dist", 0.0, 1.0, value=float(base.min_dist if base else 0.1), step=0.05,
                         key="map_md", help="How tightly points may pack together.")
    metric = p3.selectbox("metric", projection.METRICS,
                          index=projection.METRICS.index(base.metric) if base else 0, key="map_metric")
    label = "Recompute map" if cur else "Compute map"
    if st.button(label, type="primary", disabled=pending or not editor or bool(_why_not("map.build")),
                 key="map_compute", help=_why_not("map.build")):
        try:
            req = projection.request_fit(space=space, subject_type=subject_type, editor=editor,
                                         params=ProjectionParams(n_neighbors=n_neighbors, min_dist=min_dist,
                                                                 metric=metric))
            flash("Map computation queued: it runs in the background, the page updates when it is done."
                  if req else "A map job for this set is already queued.", "success" if req else "info")
            st.rerun()
        except Exception as err:
            report(err)
    if not editor:
        st.caption("Enter your name in the sidebar to compute maps.")
    st.caption("The first map after a worker starts takes longer (UMAP compiles its kernels once per process).")


@st.fragment(run_every=2 if pending else None)
def job_status() -> None:
    """Live state of the newest request; reruns the page once the job is done."""
    now = projection.latest(space=space, subject_type=subject_type)
    busy = projection.job_pending(space=space, subject_type=subject_type)
    if busy:
        what = (now.phase or now.status) if now else "working"
        st.info(f"Map job running in the background: {what}…", icon="⏳")
    elif now is not None and now.status == "failed":
        st.error(f"The last map computation failed: {now.error or 'no details'}. Change the parameters or retry.")
    elif now is not None and projection.abandoned(now):
        st.warning("A map computation was queued but no worker is running it (the worker may have stopped). "
                   "Start a worker (`workbench.py worker`) or recompute.")
    if pending and not busy:
        st.rerun()


job_status()

if cur is None:
    if not pending:
        st.info(f"No map yet for {projection.SUBJECT_TYPES.get(subject_type, subject_type)} in {space}: "
                "open “Map parameters and recompute” above and press **Compute map**.")
    st.stop()

# ---------------------------------------------------------------- staleness and fallbacks
# while a recompute runs, the old map's notes ("PCA instead of UMAP", "stale") no longer apply: the job
# status above says what is happening, and the new map brings its own notes
if cur.message and not pending:
    st.info(cur.message)
stale = projection.staleness(projection_id=cur.id)
if stale.is_stale and not pending:
    s1, s2 = st.columns([4, 1])
    s1.warning(f"This map is stale: {stale.summary()}. "
               + ("Place the new points with the fitted model, or recompute." if stale.needs_placement
                  else "Recompute it for an accurate layout."), icon="🕰️")
    if stale.needs_placement and s2.button("Place new points", disabled=pending or not editor or bool(_why_not("map.build")),
                                           help=_why_not("map.build"), key="map_place"):
        try:
            queued = projection.request_placement(projection_id=cur.id, editor=editor)
            flash("Placing new points in the background." if queued else "A map job for this set is already queued.",
                  "success" if queued else "info")
            st.rerun()
        except Exception as err:
            report(err)

df = map_view.load_points(projection_id=cur.id, space=space, subject_type=subject_type)
n_archived = int(df["archived"].sum()) if len(df) else 0
if n_archived:
    if not st.toggle(f"Show archived characters ({n_archived}, drawn as ✕)", value=True, key="map_show_archived"):
        df = df[~df["archived"]].reset_index(drop=True)
st.caption(f"{len(df):,} points · {METHOD_LABELS.get(cur.method, cur.method.upper())} (n_neighbors {cur.n_neighbors}, min_dist {cur.min_dist:g}, "
           f"{cur.metric}) · computed by {md(cur.created_by or 'unknown')} "
           f"{cur.fitted_at:%Y-%m-%d %H:%M} UTC in {cur.fit_seconds or 0:.1f} s · drag to box-select, "
           "lasso from the toolbar, click a point to preview it")

# ---------------------------------------------------------------- highlight
char_names = {}
if len(df):
    char_names = {int(c): n for c, n in zip(df["character_id"], df["name"]) if c == c and c is not None}
options = sorted(char_names, key=lambda c: char_names[c].lower())
highlight_char = c_find.selectbox("Highlight a character", options, index=None, format_func=char_names.get,
                                  placeholder="Type a name…", key=f"map_find_{subject_type}")
highlight_ids = (df.loc[df["character_id"] == highlight_char, "subject_id"].astype(int).tolist()
                 if highlight_char is not None else [])

# ---------------------------------------------------------------- the map
fig = map_view.build_figure(df, color_by=color_by, subject_type=subject_type, highlight_ids=highlight_ids,
                            revision=f"{cur.id}")
sig = map_view.figure_signature(df, color_by=color_by, subject_type=subject_type, highlight_ids=highlight_ids)
c_map, c_preview = st.columns([3, 1])
with c_map:
    event = st.plotly_chart(fig, key=f"map_chart_{cur.id}_{st.session_state.get('map_chart_gen', 0)}", on_select="rerun", selection_mode=("points", "box", "lasso"),
                            width="stretch", config={"displaylogo": False, "scrollZoom": True})
picked = map_view.selected_ids(event.selection if event else None)
kept = st.session_state.get(SEL_KEY) or {"sig": sig, "ids": [], "map": cur.id}
if kept.get("map") != cur.id:  # a recomputed map: the old selection meant other places, start empty
    kept = {"sig": sig, "ids": [], "map": cur.id}
elif picked:
    kept = {"sig": sig, "ids": picked, "map": cur.id}
elif kept["sig"] == sig:
    kept = {"sig": sig, "ids": [], "map": cur.id}  # same figure, empty selection: the editor cleared it
# else: the figure was redrawn (new colours, tags, review states), which resets Plotly's selection; keep ours
st.session_state[SEL_KEY] = kept
on_map = set(df["subject_id"].tolist())
selected = [i for i in kept["ids"] if i in on_map]

rows = df.set_index("subject_id")


def _card(sid: int, *, big: bool = False) -> None:
    r = rows.loc[sid]
    path = media_path(r["thumb"])
    if path:
        st.image(path, width="stretch")
    else:
        st.caption("no image yet")
    st.markdown(f"**{md(r['name'])}**" + (f" · {md(r['slot'])}" if r["slot"] else "") + (" · _archived_" if r["archived"] else ""))
    bits = [str(r["style"])]
    if subject_type == "variation":
        bits.append(str(r["review"]))
    if big:
        bits += [f"cluster {r['cluster_label']}", f"tag: {r['tag']}"]
        if r["placed_by"] == "transform":
            bits.append("placed after the fit")
    st.caption(" · ".join(md(b) for b in bits))
    if r["character_id"] == r["character_id"] and r["character_id"] is not None:
        st.page_link("pages/characters.py", label="Open", icon="↗️", query_params={"character": int(r["character_id"])})


with c_preview:
    focus = selected[0] if selected else (highlight_ids[0] if highlight_ids else None)
    with st.container(border=True):
        if focus is None:
            st.caption("Click a point to preview it here; box- or lasso-select a group to fill the grid below.")
        else:
            st.caption("Preview")
            _card(focus, big=True)

# ---------------------------------------------------------------- selection grid and actions
if not selected:
    st.caption("Nothing selected yet.")
    st.stop()

st.subheader(f"{len(selected)} selected")
a_tag, a_review, a_export = st.columns([2, 2, 1])
with a_tag:
    tag_name = st.text_input("Tag", key="map_tag_name", placeholder="e.g. winter palette")
    if st.button(f"Tag {len(selected)}", disabled=not editor or bool(_why_not("tag.apply")), key="map_tag_apply",
                 help=_why_not("tag.apply") or "A tag that does not exist yet is created (admin role)."):
        try:
            n = tags.apply_tag(subject_type=subject_type, subject_ids=selected, tag_name=tag_name, editor=editor)
            flash(f"Tagged {n} with “{md(tag_name.strip())}”.")
            st.rerun()
        except Exception as err:
            report(err)
with a_review:
    if subject_type == "variation":
        b1, b2 = st.columns(2)
        if b1.button(f"Approve {len(selected)}", disabled=not editor or bool(_why_not("review.bulk")),
                     key="map_approve", help=_why_not("review.bulk")):
            try:
                n = review.bulk_approve(variation_ids=selected, reviewer=editor)
                flash(f"Approved {n} (only completed, unreviewed images change).")
                st.rerun()
            except Exception as err:
                report(err)
        reasons = st.multiselect("Reject reasons", list(REASON_CODES), format_func=REASON_CODES.get,
                                 key="map_reject_reasons")
        if b2.button(f"Reject {len(selected)}", disabled=not editor or not reasons or bool(_why_not("review.bulk")),
                     key="map_reject", help=_why_not("review.bulk")
                     or "Pick at least one reason first: it goes into the next attempt's prompt."):
            try:
                n = review.bulk_reject(variation_ids=selected, reviewer=editor, reason_codes=reasons)
                skipped = len(selected) - n
                flash(f"Rejected {n}." + (f" Skipped {skipped} not yet completed." if skipped else ""),
                      "warning" if skipped else "success")
                st.rerun()
            except Exception as err:
                report(err)
    else:
        st.caption("Approve / reject works on variation maps.")
with a_export:
    too_many = len(selected) > map_view.EXPORT_MAX

    def _zip() -> bytes:
        data, _n = map_view.export_selection(subject_type=subject_type, ids=selected)
        return data

    st.download_button("Export zip", data=_zip, file_name=f"map-selection-{subject_type}.zip",
                       mime="application/zip", disabled=too_many, key="map_export", on_click="ignore",
                       help="Characters: their approved images. Images: the selected files. With a manifest.")
    if too_many:
        st.caption(f"Select at most {map_view.EXPORT_MAX} to export.")
    if st.button("Clear selection", key="map_clear"):
        st.session_state[SEL_KEY] = {"sig": "", "ids": [], "map": cur.id}
        st.session_state["map_chart_gen"] = st.session_state.get("map_chart_gen", 0) + 1  # a fresh chart, no selection
        st.rerun()

pages = map_view.grid_pages(len(selected), GRID_PER_PAGE)
page_no = st.number_input("Page", 1, pages, 1, key="map_grid_page") if pages > 1 else 1
shown = selected[(page_no - 1) * GRID_PER_PAGE: page_no * GRID_PER_PAGE]
cols = st.columns(GRID_COLUMNS)
for i, sid in enumerate(shown):
    with cols[i % GRID_COLUMNS].container(border=True):
        _card(sid)
