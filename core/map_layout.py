"""The 2-D layouts behind the map: UMAP for big sets, t-SNE for small ones, exact nearest neighbours.

Split from core/projection.py (which owns the map rows, jobs and staleness) so the numeric part reads on
its own. The reducers are pickled with each fitted map and reused to place new points; core.projection
re-exports them, so maps pickled before the split still load.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.projection import ProjectionParams

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
