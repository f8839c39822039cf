"""The 2-D layouts behind the map: UMAP for big sets, t-SNE for small ones, exact nearest neighbours,
automatic clusters, and `fit` / `place` over them (pure numerics: no rows, no jobs).

Split from core/vectors/projection.py (which owns the map rows, jobs and staleness) so the numeric part reads on
its own. The reducers are pickled with each fitted map and reused to place new points; core.vectors.projection
re-exports them, so maps pickled before the split still load.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ValidationError
from core.settings import PROJECT_ROOT, get_settings

if TYPE_CHECKING:
    from core.vectors.projection import ProjectionParams

# Automatic clusters: KMeans on the (unit-normalised) original vectors, k grows with the set.
MAX_CLUSTERS = 12
MIN_CLUSTERS = 2
NUMBA_CACHE_DEFAULT = PROJECT_ROOT / "data" / "numba-cache"

# UMAP runs on the first PCA_DIMS principal components (see UmapReducer), and big sets use fewer epochs
# (UMAP's own default is 500 epochs up to 10k points, 200 above).
PCA_DIMS = 50
LARGE_SET = 5000
LARGE_SET_EPOCHS = 200
# Up to this many points the fit gets exact nearest neighbours from numpy (blocked matrix products, a few
# seconds at 20k) instead of pynndescent, whose kernels numba compiles in every process (40-60 s cold).
# New points are then placed from their fitted neighbours' positions (see UmapReducer.transform).
EXACT_KNN_MAX = 20_000
KNN_BLOCK = 1024


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


class UmapReducer:
    """Row preprocessing for the metric, PCA to PCA_DIMS, then UMAP with euclidean distances.

    Why: nearest-neighbour descent on 384-1536 dimensions is most of a fit's time; 50 PCA
    dimensions keep the neighbourhoods (trustworthiness is unchanged in bench/projection.py)
    at half the cost. On unit-length rows euclidean distance orders neighbours exactly as
    cosine does, and correlation is cosine of mean-centred rows, so every metric becomes
    euclidean after `_prepare`. Picklable: the job stores it and transform() reuses it.
    """

    def __init__(self, params: ProjectionParams, n: int) -> None:
        self.metric = params.metric
        self.pca = None
        self.umap_kwargs = dict(
            n_neighbors=params.n_neighbors, min_dist=params.min_dist, metric="euclidean",
            n_epochs=params.n_epochs or (LARGE_SET_EPOCHS if n > LARGE_SET else None),
            random_state=params.random_state, low_memory=True,
            n_jobs=1 if params.random_state is not None else -1,  # a seed forces one thread anyway
            # spectral init needs a connected, not-too-small graph; random is safe for small sets
            init="spectral" if n > 2 * params.n_neighbors else "random")
        self.umap = None

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.metric == "correlation":
            x = x - x.mean(axis=1, keepdims=True)
        if self.metric in ("cosine", "correlation"):
            x = _normalise(x)
        return x

    def _reduce(self, x: np.ndarray) -> np.ndarray:
        x = self._prepare(x)
        if self.pca is not None:
            x = self.pca.transform(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        import warnings

        from sklearn.decomposition import PCA
        import umap

        x = self._prepare(x)
        if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
            self.pca = PCA(n_components=PCA_DIMS, random_state=0).fit(x)
        x = self._reduce(x) if self.pca is not None else np.ascontiguousarray(x, dtype=np.float32)
        kwargs = dict(self.umap_kwargs)
        if len(x) <= EXACT_KNN_MAX:
            kwargs["precomputed_knn"] = exact_knn(x, x, k=kwargs["n_neighbors"])
        self.umap = umap.UMAP(**kwargs)
        with warnings.catch_warnings():  # "transform unavailable" with precomputed kNN: we place by neighbours
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            coords = self.umap.fit_transform(x)
        if "precomputed_knn" in kwargs:
            self.fitted_x, self.fitted_coords = x, np.asarray(coords, dtype=np.float32)
        return coords

    def transform(self, x: np.ndarray) -> np.ndarray:
        """New points on the fitted map: UMAP's transform after a pynndescent fit, otherwise the
        distance-weighted mean position of each point's nearest fitted neighbours (no JIT, no refit)."""
        fitted = getattr(self, "fitted_x", None)
        if fitted is None:
            return self.umap.transform(self._reduce(x))
        idx, dist = exact_knn(self._reduce(x), fitted, k=min(self.umap_kwargs["n_neighbors"], len(fitted)))
        w = 1.0 / (dist + 1e-6)
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkd->nd", w, self.fitted_coords[idx])


class TsneReducer(UmapReducer):
    """Small sets (≤ MAP_TSNE_MAX_POINTS): the same preprocessing and PCA, then scikit-learn's t-SNE.

    Why: UMAP's first fit on a fresh machine compiles ~20 CPU-seconds of numba kernels whatever the set's
    size, so the first small map took 25 s; t-SNE is compiled ahead of time (Cython), lays out 1,000 points
    in a few seconds and keeps neighbourhoods at least as well. New points are placed from their fitted
    neighbours exactly as for exact-kNN UMAP maps (inherited `transform`)."""

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        x = self._prepare(x)
        if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
            self.pca = PCA(n_components=PCA_DIMS, random_state=0).fit(x)
        x = self._reduce(x) if self.pca is not None else np.ascontiguousarray(x, dtype=np.float32)
        perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                      random_state=self.umap_kwargs["random_state"]).fit_transform(x)
        self.fitted_x, self.fitted_coords = x, np.asarray(coords, dtype=np.float32)
        return coords


def exact_knn(queries: np.ndarray, points: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest `points` (euclidean) of every query row, nearest first: indices (int64) and distances.

    Blocked so memory stays at KNN_BLOCK × len(points) floats; for the fit (queries = points) each point's
    first neighbour is itself at distance 0, which is what UMAP's `precomputed_knn` expects.
    """
    k = min(k, len(points))
    sq = np.einsum("ij,ij->i", points, points)
    idx = np.empty((len(queries), k), dtype=np.int64)
    dist = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), KNN_BLOCK):
        q = queries[start:start + KNN_BLOCK]
        d = np.einsum("ij,ij->i", q, q)[:, None] - 2 * (q @ points.T) + sq[None, :]
        np.maximum(d, 0, out=d)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(points) else np.tile(np.arange(len(points)),
                                                                                          (len(q), 1))
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[start:start + len(q)] = np.take_along_axis(part, order, axis=1)
        dist[start:start + len(q)] = np.sqrt(np.take_along_axis(pd, order, axis=1))
    return idx, dist


def ensure_numba_cache() -> None:
    """numba compiles UMAP's kernels on first use (15-30 s); a writable cache makes later processes fast.

    Not everything caches: pynndescent generates its nearest-neighbour-descent kernels per metric
    at run time, so the first set above 4,096 points in a worker process (UMAP's exact-kNN limit)
    still compiles them once (measured 40-60 s on 2 busy cores); later fits in that process don't.
    """
    path = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(NUMBA_CACHE_DEFAULT)))
    path.mkdir(parents=True, exist_ok=True)


@dataclass
class FitResult:
    method: str
    coords: np.ndarray  # (n, 2) float32
    clusters: np.ndarray  # (n,) int
    model: dict  # what gets pickled: {"reducer": …, "kmeans": …, "method": …}
    message: str = ""


def cluster_count(n: int) -> int:
    """k for automatic clusters: about sqrt(n/2), at least 2, at most MAX_CLUSTERS, never more than n."""
    if n < 3:
        return 1
    return int(min(MAX_CLUSTERS, n - 1, max(MIN_CLUSTERS, round((n / 2) ** 0.5))))


def _kmeans(x: np.ndarray):
    from sklearn.cluster import KMeans

    k = cluster_count(len(x))
    if k < 2:
        return None, np.zeros(len(x), dtype=np.int32)
    km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(_normalise(x))  # n_init=3 cost 10+ s at 10k
    return km, km.labels_.astype(np.int32)


def _pca_coords(x: np.ndarray):
    from sklearn.decomposition import PCA

    n_comp = max(1, min(2, len(x) - 1, x.shape[1]))  # 2 points span one direction
    pca = PCA(n_components=n_comp, random_state=0).fit(x)
    return pca, _pad2(pca.transform(x))


def _pad2(c: np.ndarray) -> np.ndarray:
    """PCA of 2 points has one component: draw them on a line (y = 0)."""
    c = np.asarray(c, dtype=np.float32)
    if c.shape[1] < 2:
        c = np.hstack([c, np.zeros((len(c), 2 - c.shape[1]), dtype=np.float32)])
    return c


def fit(vectors: np.ndarray, params: ProjectionParams) -> FitResult:
    """Lay out `vectors` in 2-D: UMAP when the set is large enough, else a fallback that says why."""
    n = len(vectors)
    if n == 0:
        return FitResult("trivial", np.zeros((0, 2), np.float32), np.zeros(0, np.int32),
                         {"method": "trivial", "reducer": None, "kmeans": None},
                         "No embeddings in this set yet: the map is empty.")
    if n == 1:
        return FitResult("trivial", np.zeros((1, 2), np.float32), np.zeros(1, np.int32),
                         {"method": "trivial", "reducer": None, "kmeans": None},
                         "Only one point: it sits in the middle. A map needs more points to show neighbourhoods.")
    km, clusters = _kmeans(vectors)
    if n <= params.n_neighbors:
        pca, coords = _pca_coords(vectors)
        return FitResult("pca", coords, clusters, {"method": "pca", "reducer": pca, "kmeans": km},
                         f"Only {n} points, not more than n_neighbors ({params.n_neighbors}): laid out with PCA "
                         f"instead of UMAP. Lower n_neighbors or add points for a UMAP map.")
    if n <= get_settings().map_tsne_max_points:
        reducer: UmapReducer = TsneReducer(params, n)
        coords = np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
        return FitResult("tsne", coords, clusters, {"method": "tsne", "reducer": reducer, "kmeans": km})
    ensure_numba_cache()
    reducer = UmapReducer(params, n)
    coords = np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    return FitResult("umap", coords, clusters, {"method": "umap", "reducer": reducer, "kmeans": km})


def place(model: dict, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and clusters for new vectors from a fitted model, without refitting."""
    if model.get("reducer") is None:
        raise ValidationError("This map has no fitted model to place points with: recompute it.")
    if model["method"] == "umap":
        ensure_numba_cache()
    coords = _pad2(np.asarray(model["reducer"].transform(vectors), dtype=np.float32))
    km = model.get("kmeans")
    clusters = km.predict(_normalise(vectors)).astype(np.int32) if km is not None else np.zeros(len(vectors), np.int32)
    return coords, clusters
