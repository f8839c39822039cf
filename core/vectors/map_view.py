"""What the Map page draws: a stored projection joined with names, thumbnails and colour groups.

Kept out of the page so it is testable and fast: one query for the points, one per
kind of label (names, tags, thumbnails), a figure built from plain arrays. Plotly's
hover cannot show images, so hover carries name and slot, and the page shows a
thumbnail preview of the clicked or selected points (see `selected_ids`).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import sqlalchemy as sa

from core import media, review, tags
from core.vectors import subject_info
from core.errors import ValidationError
from core.text import escape_html
from db.engine import session_scope

# Colour-by options per subject type (data, not code paths): label shown -> column of the frame.
COLOR_BY: dict[str, dict[str, str]] = {
    "character": {"cluster": "cluster_label", "style": "style", "tag": "tag"},
    "reference": {"cluster": "cluster_label", "style": "style", "tag": "tag", "character": "name"},
    "variation": {"cluster": "cluster_label", "style": "style", "tag": "tag", "review state": "review",
                  "run": "run", "slot": "slot"},
}
MAX_GROUPS = 16  # more colours than this are unreadable: the rest become "other"
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#17BECF")
OTHER_COLOUR = "#C8C8C8"
HIGHLIGHT_COLOUR = "#111111"
LABEL_TERMS = 2  # words in an automatic cluster label
EXPORT_MAX = 500  # images in one selection zip


# ---------------------------------------------------------------- data
def load_points(*, projection_id: int, space: str, subject_type: str) -> pd.DataFrame:
    """One row per point on the map with everything hover, colour and the grid need."""
    with session_scope() as s:
        pts = s.execute(sa.text("""
            select pp.subject_id, pp.x, pp.y, coalesce(pp.cluster, 0) as cluster, pp.placed_by,
                   (e.content_hash is distinct from pp.content_hash) as stale
            from projection_point pp
            left join embedding e on e.subject_type = :t and e.space = :s and e.subject_id = pp.subject_id
                 and e.status = 'current'
            where pp.projection_id = :p order by pp.subject_id
        """), {"p": projection_id, "t": subject_type, "s": space}).all()
    df = pd.DataFrame(pts, columns=["subject_id", "x", "y", "cluster", "placed_by", "stale"])
    if df.empty:
        return df.assign(name=[], slot=[], thumb=[], style=[], review=[], run=[], character_id=[], tag=[],
                         cluster_label=[], traits=[], archived=[])
    ids = df["subject_id"].tolist()
    info = subject_info.describe(subject_type=subject_type, ids=ids)
    df["character_id"] = [info[i].character_id if i in info else None for i in ids]
    for col in ("name", "slot", "thumb", "style", "review", "run"):
        df[col] = [getattr(info[i], col) if i in info else "" for i in ids]
    df["archived"] = [bool(info[i].archived) if i in info else False for i in ids]
    tag_lists = tags.tags_for(subject_type=subject_type, subject_ids=ids)  # strongest (manual) first
    df["tag"] = [(tag_lists.get(i) or ["untagged"])[0] for i in ids]
    traits = [list(info[i].traits if i in info else ()) + tag_lists.get(i, []) for i in ids]
    df["traits"] = traits
    labels = cluster_labels(df["cluster"].tolist(), traits)
    df["cluster_label"] = [labels[c] for c in df["cluster"]]
    # unknown subjects (deleted since the fit) still show, named by id
    df.loc[df["name"] == "", "name"] = [f"#{i}" for i in df.loc[df["name"] == "", "subject_id"]]
    return df


def cluster_labels(clusters: list[int], terms: list[list[str]]) -> dict[int, str]:
    """Name each automatic cluster after its members' most distinctive traits/tags, every name different.

    A term scores by how common it is inside the cluster times how much more common than in the whole
    map (so "human", shared by everyone, names nobody); terms shared by two or more members rank first.
    Bigger clusters choose first, and a cluster's leading term is one no other cluster leads with, so no
    two clusters read the same. Only a cluster whose members have no traits or tags at all is "cluster N".
    """
    n = len(clusters)
    overall = Counter(t.lower() for ts in terms for t in set(ts))
    by_cluster: dict[int, Counter] = {}
    sizes = Counter(clusters)
    for c, ts in zip(clusters, terms):
        by_cluster.setdefault(c, Counter()).update({t.lower() for t in ts})
    ranked: dict[int, list[str]] = {}
    for c in sizes:
        size = sizes[c]
        scored = [(cnt >= 2 or size == 1, (cnt / size) * ((cnt / size) / (overall[t] / n)), t)
                  for t, cnt in by_cluster.get(c, Counter()).items()]
        ranked[c] = [t for _, _, t in sorted(scored, key=lambda x: (not x[0], -x[1], x[2]))]
    leads: set[str] = set()
    words_of: dict[int, list[str]] = {}
    for c in sorted(sizes, key=lambda c: (-sizes[c], c)):
        options = ranked[c]
        lead = next((t for t in options if t not in leads), options[0] if options else None)
        if lead is None:
            words_of[c] = []
            continue
        leads.add(lead)
        rest = [t for t in options if t != lead]
        words = [lead] + rest[:LABEL_TERMS - 1]
        if any(set(words) == set(w) for w in words_of.values()):  # same words in another order: add a fresh one
            fresh = [t for t in rest if all(t not in w for w in words_of.values())]
            words = [lead] + fresh[:LABEL_TERMS - 1] if fresh else words
        words_of[c] = words
    return {c: f"{c + 1}: {', '.join(words_of[c])}" if words_of[c] else f"cluster {c + 1}" for c in sorted(sizes)}


# ---------------------------------------------------------------- figure
@dataclass(frozen=True)
class Group:
    label: str
    colour: str
    index: list[int]  # row positions in the frame


def groups(df: pd.DataFrame, column: str) -> list[Group]:
    """Colour groups, biggest first; past MAX_GROUPS they merge into 'other'."""
    values = df[column].astype(str).fillna("") if len(df) else pd.Series([], dtype=str)
    values = values.replace("", "none")
    counts = values.value_counts()
    keep = list(counts.index[:MAX_GROUPS - 1]) if len(counts) > MAX_GROUPS else list(counts.index)
    if column == "cluster_label":  # clusters read best in their own order
        keep = sorted(keep, key=lambda v: int(v.split(":")[0].split()[-1]) if v.split(":")[0].split()[-1].isdigit() else 0)
    out = [Group(str(v), PALETTE[i % len(PALETTE)], list(map(int, (values == v).to_numpy().nonzero()[0])))
           for i, v in enumerate(keep)]
    rest = (~values.isin(keep)).to_numpy().nonzero()[0]
    if len(rest):
        out.append(Group("other", OTHER_COLOUR, list(map(int, rest))))
    return out


def hover_texts(df: pd.DataFrame) -> list[str]:
    slot = df["slot"].astype(str)
    extra = df["placed_by"].map({"transform": " · placed later", "fit": ""}).fillna("")
    stale = df["stale"].map({True: " · embedding changed", False: ""}).fillna("")
    archived = [" (archived)" if a else "" for a in df["archived"]]
    # names, slots and styles are editor text: escaped, so '<a href=…>' or '<img …>' in a name stays text
    return [f"<b>{escape_html(n)}</b>{a}" + (f"<br>{escape_html(s)}" if s else "") + f"<br>{escape_html(st)}{e}{x}"
            for n, a, s, st, e, x in zip(df["name"].astype(str), archived, slot, df["style"].astype(str), extra, stale)]


ARCHIVED_SYMBOL = "x"  # archived characters' points: a cross instead of a dot, in their group's colour


def build_figure(df: pd.DataFrame, *, color_by: str, subject_type: str, highlight_ids: list[int] | None = None,
                 revision: str = "") -> go.Figure:
    """Scattergl traces, one per colour group, with subject ids as customdata (what a selection reports)."""
    column = COLOR_BY[subject_type].get(color_by)
    if column is None:
        raise ValidationError(f"Cannot colour {subject_type} points by '{color_by}'.")
    fig = go.Figure()
    n = len(df)
    size = 9 if n < 200 else 6 if n < 3000 else 4
    hover = hover_texts(df) if n else []
    xs, ys, ids = df["x"].to_numpy(), df["y"].to_numpy(), df["subject_id"].to_numpy()
    archived = df["archived"].to_numpy(dtype=bool) if n else np.zeros(0, dtype=bool)
    hover_arr = np.asarray(hover, dtype=object)
    for g in groups(df, column):
        idx = np.asarray(g.index, dtype=int)
        # a per-point symbol list only where a group has archived points: plotly validates every list entry
        symbol = np.where(archived[idx], ARCHIVED_SYMBOL, "circle") if archived[idx].any() else "circle"
        fig.add_trace(go.Scattergl(
            x=xs[idx], y=ys[idx], customdata=ids[idx], text=hover_arr[idx],
            mode="markers", name=f"{escape_html(g.label)} ({len(idx)})", hovertemplate="%{text}<extra></extra>",
            marker={"size": size, "color": g.colour, "line": {"width": 0}, "symbol": symbol},
            selected={"marker": {"opacity": 1.0}}, unselected={"marker": {"opacity": 0.25}}))
    if highlight_ids:
        mask = df["subject_id"].isin(highlight_ids).to_numpy()
        if mask.any():
            fig.add_trace(go.Scattergl(
                x=xs[mask], y=ys[mask], customdata=ids[mask], text=[hover[i] for i in mask.nonzero()[0]],
                mode="markers", name="★ highlighted", hovertemplate="%{text}<extra></extra>",
                marker={"size": max(16, size * 3), "symbol": "star", "color": "#FFD700",
                        "line": {"width": 1.5, "color": HIGHLIGHT_COLOUR}}))
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    fig.update_layout(
        height=620, margin={"l": 8, "r": 8, "t": 8, "b": 8}, dragmode="select", clickmode="event+select",
        hovermode="closest", xaxis=axis, yaxis=axis, uirevision=revision or "map",
        # legend under the plot: on the right it collides with the modebar and eats map width
        legend={"itemsizing": "constant", "title": {"text": color_by}, "orientation": "h", "yanchor": "top",
                "y": -0.02, "x": 0},
        plot_bgcolor="white")
    return fig


def figure_signature(df: pd.DataFrame, *, color_by: str, subject_type: str, highlight_ids: list[int]) -> str:
    """Changes whenever the drawn figure would: Streamlit then treats the chart as new and drops its selection."""
    column = COLOR_BY[subject_type].get(color_by, "cluster_label")
    cols = [c for c in ("subject_id", "x", "y", column, "name", "slot", "style", "placed_by", "stale", "archived")
            if c in df]
    h = int(pd.util.hash_pandas_object(df[cols].astype(str), index=False).sum()) if len(df) else 0
    return f"{color_by}|{sorted(highlight_ids)}|{len(df)}|{h}"


def selected_ids(selection: dict | None) -> list[int]:
    """Subject ids of the selected points, from a Streamlit plotly selection (box, lasso or clicks).

    The ids ride in each trace's customdata, so they survive any split into colour traces.
    """
    out: list[int] = []
    for point in (selection or {}).get("points", []) or []:
        cd = point.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd is None:
            continue
        try:
            sid = int(cd)
        except (TypeError, ValueError):
            continue  # not one of ours (e.g. a trace without ids); nothing to select
        if sid not in out:
            out.append(sid)
    return out


# ---------------------------------------------------------------- export
def export_selection(*, subject_type: str, ids: list[int]) -> tuple[bytes, int]:
    """A zip of the selected images with manifest.csv / manifest.json (the review export's layout).

    For characters the selection means their approved images, which is the review export itself.
    """
    if not ids:
        raise ValidationError("Select some points on the map first.")
    if len(ids) > EXPORT_MAX:
        raise ValidationError(f"{len(ids)} points are selected; export at most {EXPORT_MAX} at a time.")
    if subject_type == "character":
        return review.export_approved(character_ids=ids)
    if subject_type == "variation":
        sql = ("select v.id, c.slug, c.name, v.slot_key as slot, v.path, v.review_status, v.run_id, v.attempt "
               "from variation v join character c on c.id = v.character_id where v.id = any(:ids) order by c.slug, v.id")
    elif subject_type == "reference":
        sql = ("select r.id, c.slug, c.name, 'reference' as slot, r.path, '' as review_status, null as run_id, "
               "r.position as attempt from reference_image r join character c on c.id = r.character_id "
               "where r.id = any(:ids) order by c.slug, r.id")
    else:
        raise ValidationError(f"Unknown subject type '{subject_type}'.")
    with session_scope() as s:
        rows = [dict(r._mapping) for r in s.execute(sa.text(sql), {"ids": ids}).all()]
    return media.zip_with_manifest([
        (f"{r['slug']}/{subject_type}-{r['id']}-{r['slot']}.{(r['path'] or '').rsplit('.', 1)[-1]}", r["path"], {
            "character": r["name"], "slug": r["slug"], "subject_type": subject_type, "subject_id": r["id"],
            "slot": r["slot"], "run_id": r["run_id"], "attempt": r["attempt"], "review_status": r["review_status"],
        }) for r in rows])


def grid_pages(n: int, per_page: int) -> int:
    return max(1, math.ceil(n / per_page))
