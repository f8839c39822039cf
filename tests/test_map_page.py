"""The Map page in AppTest: empty states, compute through the job queue, selection → grid → actions.

AppTest cannot drag on a Plotly chart, so `select_in_box` does what the browser does after a
box selection: it sends the chart's widget state (the JSON Streamlit's frontend builds from
Plotly's selection event, customdata included) with the next run. The points inside the box
are read from the figure the page actually sent.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import sqlalchemy as sa

from core import characters
from core.vectors import projection
from core.characters import CharacterInput
from db.engine import session_scope
from tests.test_generation import run_worker
from tests.test_pages import _click, _page, _texts


def _array(value) -> list:
    """Plotly sends numpy arrays as typed base64 ("bdata"); the browser decodes them the same way."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value)


def chart_traces(at) -> list[dict]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [{"name": t["name"], "x": _array(t["x"]), "y": _array(t["y"]), "customdata": _array(t["customdata"])}
            for t in spec["data"]]


def chart_points(at) -> list[dict]:
    """Every marker of the page's map as the browser gets it: trace, index, x, y, customdata."""
    return [{"curve_number": t, "point_number": i, "point_index": i, "x": x, "y": y, "customdata": cd}
            for t, trace in enumerate(chart_traces(at))
            for i, (x, y, cd) in enumerate(zip(trace["x"], trace["y"], trace["customdata"]))]


def select_in_box(at, x0: float, x1: float, y0: float, y1: float):
    """Box-select on the map: the chart's widget value is set the way Streamlit's frontend sets it."""
    chart = at.get("plotly_chart")[0]
    inside = [p for p in chart_points(at) if x0 <= p["x"] <= x1 and y0 <= p["y"] <= y1]
    value = {"selection": {"points": inside, "point_indices": [p["point_index"] for p in inside],
                           "box": [{"xref": "x", "yref": "y", "x": [x0, x1], "y": [y0, y1]}], "lasso": []}}
    states = at._tree.get_widget_states()
    ws = states.widgets.add()
    ws.id = chart.proto.id
    ws.string_value = json.dumps(value)
    return at._run(states), sorted({p["customdata"] for p in inside})


def left_half(at):
    pts = chart_points(at)
    xs = sorted(p["x"] for p in pts)
    mid = xs[len(xs) // 2]
    return select_in_box(at, xs[0] - 1, mid, min(p["y"] for p in pts) - 1, max(p["y"] for p in pts) + 1)


def test_map_page_without_embeddings_says_what_to_do():
    at = _page("pages/map.py")
    assert not at.exception
    assert any("No embeddings yet: embed the cast on the Embeddings page" in i.value for i in at.info)


def test_compute_character_map_select_a_group_and_tag_it(editor):
    from core import tags
    from core.demo import load_demo_cast

    load_demo_cast(editor=editor)
    run_worker(queues=None)  # the demo cast's embedding jobs
    at = _page("pages/map.py")
    assert not at.exception
    assert any("No map yet for characters" in i.value for i in at.info)
    at.slider(key="map_nn").set_value(5).run()
    _click(at, "Compute map")
    assert not at.exception
    assert projection.job_pending(space="text-local", subject_type="character")
    run_worker(queues=None)

    at = _page("pages/map.py")
    assert not at.exception
    assert any("12 points · t-SNE (n_neighbors 5" in c.value for c in at.caption)
    assert len(chart_points(at)) == 12
    assert "Click a point to preview it" in _texts(at)

    at, chosen = left_half(at)
    assert not at.exception and chosen
    assert any(h.value == f"{len(chosen)} selected" for h in at.subheader)
    names = {c.name for c in characters.list_characters(ids=chosen)}
    grid_names = {m.value.strip("*") for m in at.markdown if m.value.startswith("**")}
    assert names <= grid_names  # every selected character has a card
    opened = [pl for pl in at.get("page_link") if pl.proto.label == "Open"]
    assert len(opened) == len(chosen) + 1  # one per card plus the preview panel

    at.text_input(key="map_tag_name").input("Left Side")
    _click(at, f"Tag {len(chosen)}")
    assert not at.exception
    assert any(f"Tagged {len(chosen)} with “Left Side”" in s.value for s in at.success)
    tagged = tags.tags_for(subject_type="character", subject_ids=chosen)
    assert all("left side" in tagged[c] for c in chosen)

    at.selectbox(key="map_colour_character").set_value("tag").run()
    assert not at.exception
    legend = [t["name"] for t in chart_traces(at)]
    assert f"left side ({len(chosen)})" in legend
    assert any(h.value == f"{len(chosen)} selected" for h in at.subheader)  # redrawn figure keeps the selection


def test_variation_map_fallback_then_approve_and_reject_a_selection(editor):
    from core import generation, review

    ch = characters.create_character(data=CharacterInput(name="Ayla", traits=["storm mage"]), editor=editor)
    generation.request_run(character_id=ch.id, requested_by=editor)
    run_worker(queues=None)  # ten slots, then their embedding jobs
    run_worker(queues=None)
    sets = projection.available_sets()
    var_set = next(i for i, s in enumerate(sets) if s["subject_type"] == "variation" and s["space"] == "image-learned")

    at = _page("pages/map.py")
    at.selectbox(key="map_set").set_value(var_set).run()
    _click(at, "Compute map")
    run_worker(queues=None)
    at = _page("pages/map.py")
    at.selectbox(key="map_set").set_value(var_set).run()
    assert not at.exception
    assert any("Only 10 points, not more than n_neighbors (15): laid out with PCA" in i.value for i in at.info)

    at, chosen = left_half(at)
    assert chosen and any(h.value == f"{len(chosen)} selected" for h in at.subheader)
    _click(at, f"Approve {len(chosen)}")
    assert not at.exception
    assert {review.get_variation(variation_id=v).review_status for v in chosen} == {"approved"}

    at.multiselect(key="map_reject_reasons").select("style_drift").run()
    _click(at, f"Reject {len(chosen)}")
    assert not at.exception
    rejected = [review.get_variation(variation_id=v) for v in chosen]
    assert {v.review_status for v in rejected} == {"rejected"}
    assert all(v.reason_codes == ["style_drift"] for v in rejected)


def test_stale_map_offers_placement_and_highlight_marks_a_character(editor):
    from tests.test_projection import FAST, clustered, store

    store(range(1001, 1031), clustered(30), subject_type="character")  # ids no character has
    p = projection.request_fit(space="text-local", subject_type="character", params=FAST, editor=editor)
    run_worker(queues=None)
    ayla = characters.create_character(data=CharacterInput(name="Ayla"), editor=editor)
    with session_scope() as s:  # no model run in this test: Ayla gets a synthetic vector, the job is dropped
        s.execute(sa.text("delete from procrastinate_jobs"))
    store([ayla.id], clustered(1, seed=9))
    at = _page("pages/map.py")
    assert not at.exception
    assert any("This map is stale: 1 new embedding(s) not on the map" in w.value for w in at.warning)
    _click(at, "Place new points")
    run_worker(queues=None)
    at = _page("pages/map.py")
    assert not at.exception
    assert not at.warning  # 1 of 31 placed by transform: below the stale share
    at.selectbox(key="map_find_character").set_value(ayla.id).run()
    star = [t for t in chart_traces(at) if t["name"] == "★ highlighted"]
    assert star and star[0]["customdata"] == [ayla.id]
    assert any(m.value == "**Ayla**" for m in at.markdown)  # the preview panel shows the highlighted one
    assert projection.get_projection(projection_id=p.id).n_points == 31


def _marker_symbols(at) -> dict[int, str]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    out = {}
    for t in spec["data"]:
        ids, sym = _array(t["customdata"]), t["marker"]["symbol"]
        syms = [sym] * len(ids) if isinstance(sym, str) else _array(sym)  # one symbol for a group: a scalar
        out.update(zip(ids, syms))
    return out


def test_recompute_clears_the_old_selection_and_notes_and_archived_characters_are_marked(editor):
    from tests.test_projection import clustered, store

    cast = [characters.create_character(data=CharacterInput(name=f"Hero {i}", traits=[f"trait {i % 2}"]),
                                        editor=editor) for i in range(4)]
    gone = characters.set_archived(character_id=cast[0].id, expected_version=cast[0].version, archived=True,
                                   editor=editor)
    with session_scope() as s:  # no model run in this test: synthetic vectors, the embedding jobs are dropped
        s.execute(sa.text("delete from procrastinate_jobs"))
    store([c.id for c in cast], clustered(4, seed=1))
    projection.request_fit(space="text-local", subject_type="character", editor=editor,
                           params=projection.ProjectionParams(n_neighbors=5, random_state=3))
    run_worker(queues=None)

    at = _page("pages/map.py")
    assert not at.exception
    assert any("Only 4 points" in i.value for i in at.info)
    symbols = _marker_symbols(at)
    assert symbols[gone.id] == "x" and {symbols[c.id] for c in cast[1:]} == {"circle"}
    at.toggle(key="map_show_archived").set_value(False).run()
    assert gone.id not in _marker_symbols(at) and len(_marker_symbols(at)) == 3
    at.toggle(key="map_show_archived").set_value(True).run()

    more = [characters.create_character(data=CharacterInput(name=f"Extra {i}"), editor=editor) for i in range(2)]
    with session_scope() as s:
        s.execute(sa.text("delete from procrastinate_jobs"))
    store([c.id for c in more], clustered(2, seed=2))
    at, chosen = left_half(at)
    assert chosen and any(h.value == f"{len(chosen)} selected" for h in at.subheader)
    assert any("This map is stale" in w.value for w in at.warning)

    at.slider(key="map_nn").set_value(10).run()
    _click(at, "Recompute map")
    assert not at.exception
    # while the new map is computed the old map's notes are gone (the job status says what happens)
    assert not any("Only 4 points" in i.value for i in at.info)
    assert not any("This map is stale" in w.value for w in at.warning)
    run_worker(queues=None)
    at.run()  # what the page's job-status fragment triggers when the job is done
    assert not at.exception
    assert any("Only 6 points" in i.value for i in at.info)
    assert not any("Only 4 points" in i.value for i in at.info)
    assert not any("This map is stale" in w.value for w in at.warning)
    assert "Nothing selected yet." in _texts(at)  # the old selection meant places on the old map
    assert not any(h.value.endswith("selected") for h in at.subheader)
