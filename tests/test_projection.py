"""The cluster map's projections: fitted in a real procrastinate job on the real database.

Vectors are synthetic (clustered, 384-d) and written straight into the embedding
table, the way the embedding backfill stores them. UMAP runs for real with a small
n_neighbors and few epochs so the tests stay quick.
"""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from core import media
from core.vectors import projection
from core.errors import ValidationError
from core.vectors.projection import ProjectionParams
from db.engine import session_scope
from tests.test_generation import run_worker

SPACE = "text-local"


@pytest.fixture(autouse=True)
def umap_for_every_size(settings_override):
    """These tests exercise the UMAP path on small sets; t-SNE for small maps has its own test below."""
    settings_override(map_tsne_max_points=0)
FAST = ProjectionParams(n_neighbors=5, min_dist=0.1, metric="cosine", n_epochs=30, random_state=7)


def clustered(n: int, *, seed: int = 0, centres: int = 4, dims: int = 384) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dims))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dims))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def store(ids, vectors, *, subject_type: str = "character", space: str = SPACE, status: str = "current",
          tag: str = "v1") -> None:
    """Upsert embeddings the way core.vectors.embeddings stores them (content hash per subject)."""
    if len(ids) == 0:
        return
    with session_scope() as s:
        s.execute(sa.text("""
            insert into embedding (subject_type, subject_id, space, model_id, dims, content_hash, vector, status)
            values (:t, :i, :s, 'test', :d, :h, cast(:v as vector), :st)
            on conflict (subject_type, subject_id, space) do update set content_hash = excluded.content_hash,
                vector = excluded.vector, status = excluded.status, updated_at = now()
        """), [{"t": subject_type, "i": int(i), "s": space, "d": len(v), "h": f"{tag}-{i}", "st": status,
                "v": "[" + ",".join(f"{x:.6f}" for x in v) + "]"} for i, v in zip(ids, vectors)])


def points(projection_id: int) -> dict[int, dict]:
    with session_scope() as s:
        rows = s.execute(sa.text("select subject_id, x, y, content_hash, placed_by, cluster from projection_point "
                                 "where projection_id = :p"), {"p": projection_id}).all()
    return {r.subject_id: dict(r._mapping) for r in rows}


def fit_now(subject_type: str = "character", params: ProjectionParams = FAST, editor: str = "Tess"):
    req = projection.request_fit(space=SPACE, subject_type=subject_type, params=params, editor=editor)
    assert req is not None and req.status == "queued"
    assert projection.job_pending(space=SPACE, subject_type=subject_type)
    run_worker(queues=None)
    return projection.get_projection(projection_id=req.id)


def test_fit_job_stores_a_point_for_every_current_embedding_and_nothing_else():
    store(range(1, 41), clustered(40))
    store([99], clustered(1, seed=5), status="failed")  # a failed embed is not on the map
    store([1, 2], clustered(2, seed=6), space="text-openai-fake")  # another space is another map
    store([7], clustered(1, seed=7), subject_type="variation")  # another subject type too
    p = fit_now()
    assert p.status == "ready" and p.method == "umap" and p.n_points == 40 and not p.message
    pts = points(p.id)
    assert sorted(pts) == list(range(1, 41))
    assert all(v["placed_by"] == "fit" and v["content_hash"] == f"v1-{k}" for k, v in pts.items())
    assert all(np.isfinite([v["x"], v["y"]]).all() for v in pts.values())
    assert len({v["cluster"] for v in pts.values()}) >= 2  # automatic clusters
    assert media.exists(p.model_path)
    assert projection.current(space=SPACE, subject_type="character").id == p.id
    assert not projection.staleness(projection_id=p.id).is_stale
    assert not projection.job_pending(space=SPACE, subject_type="character")


def test_transform_places_new_and_changed_points_without_refitting():
    store(range(1, 41), clustered(40))
    p = fit_now()
    before = points(p.id)
    store([41, 42, 43], clustered(3, seed=11))  # new characters embedded after the fit
    store([5], clustered(1, seed=12), tag="v2")  # one character's embedding changed
    st = projection.staleness(projection_id=p.id)
    assert (st.new_ids, st.changed_ids, st.is_stale) == ([41, 42, 43], [5], True)
    assert "3 new embedding(s)" in st.summary() and "1 embedding(s) changed" in st.summary()

    assert projection.request_placement(projection_id=p.id, editor="Tess") is not None
    run_worker(queues=None)
    after = points(p.id)
    assert sorted(after) == list(range(1, 44))
    assert {k for k, v in after.items() if v["placed_by"] == "transform"} == {5, 41, 42, 43}
    assert after[5]["content_hash"] == "v2-5"
    # the fitted points did not move: no refit happened
    assert all((after[k]["x"], after[k]["y"]) == (before[k]["x"], before[k]["y"]) for k in before if k != 5)
    again = projection.get_projection(projection_id=p.id)
    assert again.fitted_at == p.fitted_at and again.n_points == 43
    st = projection.staleness(projection_id=p.id)
    assert not st.needs_placement and st.n_transform == 4
    assert st.transform_share == pytest.approx(4 / 43)


def test_stale_when_many_points_were_transformed_or_embeddings_vanished():
    store(range(1, 21), clustered(20))
    p = fit_now()
    store(range(21, 31), clustered(10, seed=3))
    projection.request_placement(projection_id=p.id, editor="Tess")
    run_worker(queues=None)
    st = projection.staleness(projection_id=p.id)
    assert not st.needs_placement and st.transform_share == pytest.approx(10 / 30)
    assert st.is_stale and "33% of the points were placed by transform" in st.summary()

    with session_scope() as s:
        s.execute(sa.text("delete from embedding where subject_id = 3"))
    st = projection.staleness(projection_id=p.id)
    assert st.gone_ids == [3] and "1 point(s) whose embedding is gone" in st.summary()

    refit = fit_now()  # the recompute replaces the old map and its model file
    assert refit.n_points == 29 and not projection.staleness(projection_id=refit.id).is_stale
    assert projection.current(space=SPACE, subject_type="character").id == refit.id
    with pytest.raises(projection.NotFoundError):
        projection.get_projection(projection_id=p.id)
    assert not media.exists(p.model_path)


@pytest.mark.parametrize("n, method, words", [
    (0, "trivial", "No embeddings"),
    (1, "trivial", "Only one point"),
    (2, "pca", "Only 2 points"),
    (4, "pca", "Only 4 points"),  # fewer than n_neighbors = 5
])
def test_tiny_sets_get_a_fallback_layout_and_a_message(n, method, words):
    store(range(1, n + 1), clustered(n) if n else [])
    p = fit_now()
    assert p.status == "ready" and p.method == method and p.n_points == n
    assert words in p.message
    pts = points(p.id)
    assert sorted(pts) == list(range(1, n + 1))
    if n == 2:
        assert pts[1]["y"] == pts[2]["y"] == 0 and pts[1]["x"] != pts[2]["x"]  # on a line


def test_a_trivial_map_refits_when_points_arrive_and_pca_maps_transform():
    store([1], clustered(1))
    p = fit_now()
    store(range(2, 10), clustered(8, seed=2))
    projection.request_placement(projection_id=p.id, editor="Tess")
    run_worker(queues=None)
    p = projection.get_projection(projection_id=p.id)
    assert p.method == "umap" and p.n_points == 9  # nothing to transform with: refitted
    assert {v["placed_by"] for v in points(p.id).values()} == {"fit"}


def test_a_second_request_for_the_same_set_is_not_queued_twice():
    store(range(1, 11), clustered(10))
    first = projection.request_fit(space=SPACE, subject_type="character", params=FAST, editor="Tess")
    second = projection.request_fit(space=SPACE, subject_type="character", params=FAST, editor="Tess")
    assert first is not None and second is None
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from projection")).scalar_one() == 1
        assert s.execute(sa.text("select count(*) from procrastinate_jobs")).scalar_one() == 1
    # another subject type is another set: queued independently
    assert projection.request_fit(space=SPACE, subject_type="variation", params=FAST, editor="Tess") is not None


@pytest.mark.parametrize("params, words", [
    (ProjectionParams(n_neighbors=1), "n_neighbors must be between"),
    (ProjectionParams(min_dist=2.0), "min_dist must be between"),
    (ProjectionParams(metric="hamming"), "Unknown metric 'hamming'"),
])
def test_bad_parameters_are_refused_before_anything_is_queued(params, words):
    with pytest.raises(ValidationError, match=words):
        projection.request_fit(space=SPACE, subject_type="character", params=params, editor="Tess")
    assert projection.latest(space=SPACE, subject_type="character") is None


def test_a_map_whose_worker_vanished_is_reported_abandoned():
    store(range(1, 11), clustered(10))
    p = projection.request_fit(space=SPACE, subject_type="character", params=FAST, editor="Tess")
    assert not projection.abandoned(p)
    with session_scope() as s:  # the job is gone (e.g. cancelled by an operator) but the row says queued
        s.execute(sa.text("update procrastinate_jobs set status = 'cancelled'"))
    assert projection.abandoned(projection.get_projection(projection_id=p.id))


def test_small_maps_use_tsne_keep_neighbourhoods_and_place_new_points(settings_override):
    """Up to MAP_TSNE_MAX_POINTS a map is t-SNE (no numba compile on a fresh machine): it keeps
    neighbourhoods better than PCA, and new points are placed next to their fitted neighbours."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    settings_override(map_tsne_max_points=1500)
    x = clustered(120, centres=4)
    store(range(1, 121), x)
    p = fit_now()
    assert p.status == "ready" and p.method == "tsne" and p.n_points == 120
    pts = points(p.id)
    coords = np.array([(pts[i]["x"], pts[i]["y"]) for i in range(1, 121)])
    pca2 = PCA(n_components=2, random_state=0).fit_transform(x)
    assert trustworthiness(x, coords, n_neighbors=10, metric="cosine") > \
        trustworthiness(x, pca2, n_neighbors=10, metric="cosine")
    store(range(121, 124), clustered(3, seed=9))
    projection.request_placement(projection_id=p.id, editor="Tess")
    run_worker(queues=None)
    placed = points(p.id)
    assert all(placed[i]["placed_by"] == "transform" for i in range(121, 124))


def test_maps_pickled_before_core_was_grouped_still_load():
    """Fitted maps on disk name the modules as they were before core/vectors/ existed: they still load."""
    import io
    import pickle

    from core.vectors import map_layout, projection

    before = b"core" + b".map_layout"  # the old module name (split: import rewriting leaves it alone)
    old = pickle.dumps(map_layout.TsneReducer, protocol=0).replace(b"core.vectors.map_layout", before)
    assert b"c" + before + b"\nTsneReducer" in old
    assert projection._MovedModulesUnpickler(io.BytesIO(old)).load() is map_layout.TsneReducer
