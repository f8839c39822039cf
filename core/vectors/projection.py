"""Cached 2-D maps of an embedding space: UMAP fits in a background job, transform for newcomers.

Why this shape:
- A UMAP fit costs seconds to minutes and its first call in a process pays
  15-30 s of numba JIT, so fits and placements only ever run in a worker job
  (`core.tasks.compute_projection`); pages read stored coordinates.
- Each projection row is one fit of one (space, subject_type) set with its
  parameters. Points keep the embedding content hash they were computed
  from: a point whose embedding changed since is visibly stale.
- The fitted model (UMAP or PCA, plus the KMeans used for automatic clusters)
  is pickled to a file under MEDIA_ROOT through core.media, so a later job can
  place new points with `transform()` instead of refitting everything. Those
  points are marked `placed_by='transform'`; once they are a large share of
  the map, the page recommends a recompute.
- Sets too small for UMAP (no point, one point, fewer points than
  n_neighbors) get a PCA or trivial layout and a message saying so.
"""
from __future__ import annotations

import logging
import io
import pickle
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import sqlalchemy as sa

from core import media
from core.errors import NotFoundError, ValidationError
from core.vectors.map_layout import (  # noqa: F401 (pickled maps name core.vectors.projection.UmapReducer; callers call projection.fit)
    FitResult, TsneReducer, UmapReducer, cluster_count, ensure_numba_cache, exact_knn, fit, place,
)
from core.vectors.map_staleness import Staleness, staleness  # noqa: F401 (callers use projection.staleness)
from db.engine import get_engine, session_scope
from db.models import Projection, utcnow

log = logging.getLogger(__name__)

SUBJECT_TYPES: dict[str, str] = {"character": "characters", "reference": "reference images",
                                 "variation": "variations"}
METRICS: tuple[str, ...] = ("cosine", "euclidean", "correlation")
DEFAULT_PARAMS: dict[str, object] = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine"}
N_NEIGHBORS_RANGE = (2, 200)
# A map is "stale" once this share of its points was placed by transform() rather than fitted.
# Automatic clusters: KMeans on the (unit-normalised) original vectors, k grows with the set.
MODEL_DIR = "projections"
ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class ProjectionParams:
    """What an editor chooses for a map; `n_epochs` / `random_state` are for tests and benchmarks."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    n_epochs: int | None = None
    random_state: int | None = None

    def validate(self) -> ProjectionParams:
        lo, hi = N_NEIGHBORS_RANGE
        if not (lo <= int(self.n_neighbors) <= hi):
            raise ValidationError(f"n_neighbors must be between {lo} and {hi} (got {self.n_neighbors}).")
        if not (0.0 <= float(self.min_dist) <= 1.0):
            raise ValidationError(f"min_dist must be between 0 and 1 (got {self.min_dist}).")
        if self.metric not in METRICS:
            raise ValidationError(f"Unknown metric '{self.metric}'. Choose one of: {', '.join(METRICS)}.")
        if self.n_epochs is not None and int(self.n_epochs) < 1:
            raise ValidationError("n_epochs must be at least 1.")
        return self


# ---------------------------------------------------------------- vectors
@dataclass
class VectorSet:
    ids: np.ndarray  # int64, ascending
    hashes: list[str | None]
    vectors: np.ndarray  # float32 (n, dims)


def load_vectors(*, space: str, subject_type: str, ids: list[int] | None = None) -> VectorSet:
    """Current vectors of a set, read in binary (text parsing 50k × 384 floats takes seconds)."""
    sql = ("select subject_id, content_hash, vector from embedding where space = %s and subject_type = %s "
           "and status = 'current' and vector is not null")
    args: list = [space, subject_type]
    if ids is not None:
        sql += " and subject_id = any(%s)"
        args.append(list(ids))
    sql += " order by subject_id"
    from pgvector.psycopg import register_vector

    raw = get_engine().raw_connection()
    try:
        register_vector(raw.driver_connection)  # the pgvector package's binary loader
        with raw.driver_connection.cursor(binary=True) as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        raw.driver_connection.rollback()
    finally:
        raw.close()
    if not rows:
        return VectorSet(np.zeros(0, dtype=np.int64), [], np.zeros((0, 0), dtype=np.float32))
    return VectorSet(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows],
                     np.vstack([r[2].to_numpy() for r in rows]).astype(np.float32))


def available_sets() -> list[dict]:
    """(space, subject_type) pairs that have current vectors, with counts: what a map can be drawn of."""
    with session_scope() as s:
        rows = s.execute(sa.text(
            "select space, subject_type, count(*) from embedding where status='current' and vector is not null "
            "and subject_type = any(:types) group by space, subject_type order by subject_type, space"),
            {"types": list(SUBJECT_TYPES)}).all()
    return [{"space": sp, "subject_type": st, "count": n} for sp, st, n in rows]


def warm_up() -> None:
    """Compile UMAP's kernels once per worker process (a tiny fit), so the first real map doesn't pay for it.

    Several of UMAP's numba kernels (layout optimiser, smooth kNN distances) are not cached on disk and
    compile in every process; the worker runs this in a background thread at start. numba's LLVM work
    happens outside the GIL, so slots running meanwhile keep going.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    try:
        ensure_numba_cache()
        UmapReducer(ProjectionParams(n_epochs=5, random_state=None), len(x)).fit_transform(x)
    except Exception:  # a failed warm-up only means the first map compiles for itself
        log.exception("UMAP warm-up failed; the first map will compile UMAP itself")
        return
    log.info("UMAP kernels ready in %.1f s", time.perf_counter() - t0)


# ---------------------------------------------------------------- rows
def get_projection(*, projection_id: int) -> Projection:
    with session_scope() as s:
        p = s.get(Projection, projection_id)
    if p is None:
        raise NotFoundError(f"Map #{projection_id} does not exist (it may have been replaced by a newer one).")
    return p


def _update(projection_id: int, **values) -> None:
    with session_scope() as s:
        s.execute(sa.update(Projection).where(Projection.id == projection_id).values(updated_at=utcnow(), **values))


def latest(*, space: str, subject_type: str) -> Projection | None:
    """The newest map request of a set, whatever its state (queued, running, ready, failed)."""
    with session_scope() as s:
        return s.execute(sa.select(Projection).where(Projection.space == space,
                                                     Projection.subject_type == subject_type)
                         .order_by(Projection.id.desc()).limit(1)).scalar_one_or_none()


def current(*, space: str, subject_type: str) -> Projection | None:
    """The newest ready map of a set: the one the page draws."""
    with session_scope() as s:
        return s.execute(sa.select(Projection).where(Projection.space == space,
                                                     Projection.subject_type == subject_type,
                                                     Projection.status == "ready")
                         .order_by(Projection.id.desc()).limit(1)).scalar_one_or_none()


def _model_rel_path(p: Projection) -> str:
    return f"{MODEL_DIR}/{p.space}/{p.subject_type}-{p.id}.pkl"


def load_model(p: Projection) -> dict | None:
    """The pickled model of a map. Pickles are only ever read from our own MEDIA_ROOT, written by our jobs."""
    if not p.model_path:
        return None
    if not media.exists(p.model_path):
        raise ValidationError(f"The fitted model of map #{p.id} is missing from the media folder: recompute the map.")
    return _MovedModulesUnpickler(io.BytesIO(media.read_bytes(p.model_path))).load()


class _MovedModulesUnpickler(pickle.Unpickler):
    """Maps pickled before core/ was grouped name core.vectors.projection / core.vectors.map_layout: read them from core.vectors."""

    MOVED = {"core" + ".projection": "core.vectors.projection",  # split strings: regroup scripts leave them alone
             "core" + ".map_layout": "core.vectors.map_layout"}

    def find_class(self, module: str, name: str):
        return super().find_class(self.MOVED.get(module, module), name)


def _write_points(s, projection_id: int, ids, hashes, coords, clusters, placed_by: str) -> None:
    if len(ids) == 0:
        return
    s.execute(sa.text("""
        insert into projection_point (projection_id, subject_id, x, y, content_hash, placed_by, cluster)
        values (:p, :i, :x, :y, :h, :b, :c)
        on conflict (projection_id, subject_id) do update set x = excluded.x, y = excluded.y,
            content_hash = excluded.content_hash, placed_by = excluded.placed_by, cluster = excluded.cluster
    """), [{"p": projection_id, "i": int(i), "x": float(xy[0]), "y": float(xy[1]), "h": h, "b": placed_by,
            "c": int(c)} for i, h, xy, c in zip(ids, hashes, coords, clusters)])


def run_fit(*, projection_id: int) -> dict:
    """Job body: fit the map of a queued projection, store its points and model, retire older maps."""
    p = get_projection(projection_id=projection_id)
    params = ProjectionParams(n_neighbors=p.n_neighbors, min_dist=p.min_dist, metric=p.metric,
                              n_epochs=p.params.get("n_epochs"), random_state=p.params.get("random_state"))
    _update(projection_id, status="running", phase="loading vectors", error=None)
    t0 = time.perf_counter()
    try:
        vs = load_vectors(space=p.space, subject_type=p.subject_type)
        _update(projection_id, phase=f"fitting the map of {len(vs.ids):,} points")
        res = fit(vs.vectors, params)
        _update(projection_id, phase="saving")
        rel = _model_rel_path(p)
        media.write_atomic(rel, pickle.dumps(res.model, protocol=pickle.HIGHEST_PROTOCOL))
        elapsed = time.perf_counter() - t0
        with session_scope() as s:  # points and the ready state in one transaction
            s.execute(sa.text("delete from projection_point where projection_id = :p"), {"p": projection_id})
            _write_points(s, projection_id, vs.ids, vs.hashes, res.coords, res.clusters, "fit")
            s.execute(sa.update(Projection).where(Projection.id == projection_id).values(
                status="ready", phase="", method=res.method, message=res.message, n_points=len(vs.ids),
                model_path=rel, fit_seconds=elapsed, fitted_at=utcnow(), updated_at=utcnow()))
    except Exception as err:
        log.exception("map #%s (%s / %s) failed", projection_id, p.space, p.subject_type)
        _update(projection_id, status="failed", phase="", error=f"{err.__class__.__name__}: {err}"[:2000])
        raise
    _retire_older(p)
    log.info("map #%s: %s of %d points in %.1f s", projection_id, res.method, len(vs.ids), elapsed)
    return {"projection_id": projection_id, "method": res.method, "n_points": len(vs.ids),
            "seconds": round(elapsed, 2)}


def _retire_older(p: Projection) -> None:
    """Older finished maps of the same set are replaced: drop their rows and model files."""
    with session_scope() as s:
        old = s.execute(sa.delete(Projection).where(
            Projection.space == p.space, Projection.subject_type == p.subject_type, Projection.id < p.id,
            Projection.status.in_(("ready", "failed"))).returning(Projection.model_path)).scalars().all()
    media.remove(*[m for m in old if m])


def run_place(*, projection_id: int) -> dict:
    """Job body: place new and changed embeddings on a ready map with transform(); drop vanished points.

    A map without a fitted model (0 or 1 point) is refitted instead: there is nothing to transform with.
    """
    p = get_projection(projection_id=projection_id)
    if p.status != "ready":
        raise ValidationError(f"Map #{projection_id} is {p.status}, not ready: points can only be added to a ready map.")
    model = load_model(p)
    if model is None or model.get("reducer") is None:
        with session_scope() as s:
            s.execute(sa.update(Projection).where(Projection.id == projection_id).values(status="queued"))
        return run_fit(projection_id=projection_id)
    st = staleness(projection_id=projection_id)
    todo = st.new_ids + st.changed_ids
    placed = 0
    if todo:
        _update(projection_id, phase=f"placing {len(todo):,} points")
        vs = load_vectors(space=p.space, subject_type=p.subject_type, ids=todo)
        if len(vs.ids):
            coords, clusters = place(model, vs.vectors)
            placed = len(vs.ids)
    with session_scope() as s:
        if st.gone_ids:
            s.execute(sa.text("delete from projection_point where projection_id = :p and subject_id = any(:ids)"),
                      {"p": projection_id, "ids": st.gone_ids})
        if placed:
            _write_points(s, projection_id, vs.ids, vs.hashes, coords, clusters, "transform")
        n = s.execute(sa.text("select count(*) from projection_point where projection_id = :p"),
                      {"p": projection_id}).scalar_one()
        s.execute(sa.update(Projection).where(Projection.id == projection_id).values(
            phase="", n_points=n, updated_at=utcnow()))
    return {"projection_id": projection_id, "placed": placed, "removed": len(st.gone_ids)}


# ---------------------------------------------------------------- requests (web side)
def _set_lock(space: str, subject_type: str) -> str:
    return f"projection-{space}-{subject_type}"


def job_pending(*, space: str, subject_type: str) -> bool:
    """A fit or placement for this set is waiting or running in the queue."""
    from core import jobs

    return jobs.pending_jobs(jobs.COMPUTE_PROJECTION, args={"space": space, "subject_type": subject_type}) > 0


class _AlreadyQueued(Exception):
    """A fit for the set already waits: roll the request's transaction back (nothing written, no audit)."""


def request_fit(*, space: str, subject_type: str, params: ProjectionParams, editor: str) -> Projection | None:
    """Queue a (re)computation of a set's map (editor role); None when one is already queued for that set.

    The projection row, its job and the audit row commit in one transaction: a refused, duplicate or
    failed request leaves none of them (and the worker never sees a job whose row is not committed)."""
    from procrastinate.exceptions import AlreadyEnqueued

    from core import jobs
    from core.team.access import authorize
    from core.team.audit import record, snapshot

    params = params.validate()
    if subject_type not in SUBJECT_TYPES:
        raise ValidationError(f"Unknown subject type '{subject_type}'.")
    if not editor:
        raise ValidationError("Enter your name in the sidebar first.")
    extra = {k: v for k, v in asdict(params).items() if k in ("n_epochs", "random_state") and v is not None}
    try:
        with session_scope() as s:
            role = authorize(s, who=editor, action="map.build")
            p = Projection(space=space, subject_type=subject_type, n_neighbors=int(params.n_neighbors),
                           min_dist=float(params.min_dist), metric=params.metric, params=extra, created_by=editor)
            s.add(p)
            s.flush()
            try:
                p.job_id = jobs.defer_projection(projection_id=p.id, space=space, subject_type=subject_type,
                                                 mode="fit", connection=s.connection().connection.driver_connection)
            except AlreadyEnqueued:
                raise _AlreadyQueued from None
            s.flush()
            record(s, who=editor, role=role, action="map.build", entity="projection", entity_id=p.id,
                   label=f"{subject_type} map in {space}",
                   after=snapshot(p, ["space", "subject_type", "n_neighbors", "min_dist", "metric", "params"]))
            pid = p.id
    except _AlreadyQueued:
        return None
    return get_projection(projection_id=pid)


def request_placement(*, projection_id: int, editor: str) -> int | None:
    """Queue placing new/changed points on a ready map (editor role, like a fit); None when a job for the
    set is already queued. The job and its audit row commit in one transaction (a refused or duplicate
    request leaves neither)."""
    from procrastinate.exceptions import AlreadyEnqueued

    from core import jobs
    from core.team.access import authorize
    from core.team.audit import record

    if not editor:
        raise ValidationError("Enter your name in the sidebar first.")
    try:
        with session_scope() as s:
            role = authorize(s, who=editor, action="map.build")
            p = s.get(Projection, projection_id)
            if p is None:
                raise NotFoundError(f"Map #{projection_id} does not exist (it may have been replaced by a newer one).")
            if p.status != "ready":
                raise ValidationError("Only a finished map can take new points.")
            try:
                job_id = jobs.defer_projection(projection_id=p.id, space=p.space, subject_type=p.subject_type,
                                               mode="place", connection=s.connection().connection.driver_connection)
            except AlreadyEnqueued:
                raise _AlreadyQueued from None
            record(s, who=editor, role=role, action="map.build", entity="projection", entity_id=p.id,
                   label=f"placing new points on the {p.subject_type} map in {p.space}")
    except _AlreadyQueued:
        return None
    return job_id


def abandoned(p: Projection) -> bool:
    """A request still marked queued/running although no job for it is waiting or running (worker gone)."""
    return p.status in ACTIVE_STATES and not job_pending(space=p.space, subject_type=p.subject_type)
