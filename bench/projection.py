"""The cluster map: UMAP fit time, transform time, page render time and map quality.

Synthetic clustered 384-d vectors (40 centres + noise, unit length, like sentence
embeddings) go into the real `embedding` table as space 'text-local' for 2k / 10k / 50k
characters (real character rows, so the page has names and traits to show). Every fit
and placement runs through the job queue (`projection.request_fit` → worker), the way
the Map page triggers it; the numba JIT warm-up is measured separately first.

Cold fits (`fit_cold_s_1k`, `fit_cold_s_10k`): request → ready with the job run by a fresh worker process
whose NUMBA_CACHE_DIR is an empty folder, so imports and every numba compilation are inside the figure
(what the first map on a fresh machine costs).

Quality: trustworthiness (sklearn.manifold, k=10, cosine in the original space) of the
10k UMAP map against a PCA-to-2-D baseline of the same vectors. Trustworthiness needs
all pairwise distances, so it is computed on a random subsample of 2,000 of the 10k
points (the same subsample for both).
"""
from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

from _setup import ROOT, bench_database

DIMS, CENTRES, NOISE = 384, 40, 0.35
SIZES = (2_000, 10_000, 50_000)
WARMUP = 5_000
TRUST_SAMPLE, TRUST_K = 2_000, 10
WORDS = ("storm mage silver hair tinker spectacles assassin hooded knight archer fox spirit android chrome "
         "lighthouse keeper queen crown medic netrunner swordsman noodle stand mouse needle sword poet pirate "
         "druid ranger bard monk").split()


def vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, len(centres), n)
    x = centres[label] + NOISE * rng.normal(size=(n, DIMS)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), label


def load(ids: np.ndarray, x: np.ndarray, labels: np.ndarray, *, fresh: bool) -> None:
    """COPY characters (traits follow the cluster, so cluster labels mean something) and their vectors."""
    from db.engine import get_engine

    raw = get_engine().raw_connection()
    try:
        with raw.cursor() as cur:
            if fresh:
                cur.execute("truncate embedding, projection, projection_point, character restart identity cascade")
            with cur.copy("copy character (id, slug, name, traits) from stdin") as cp:
                for i, lab in zip(ids, labels):
                    traits = [WORDS[lab % len(WORDS)], WORDS[(lab * 7 + 3) % len(WORDS)]]
                    cp.write_row((int(i), f"bench-{i}", f"Bench {i:05d}", json.dumps(traits)))
            with cur.copy("copy embedding (subject_type, subject_id, space, model_id, dims, content_hash, vector, "
                          "status) from stdin") as cp:
                for i, v in zip(ids, x):
                    cp.write_row(("character", int(i), "text-local", "bench", DIMS, f"h{i}",
                                  "[" + ",".join(f"{f:.6f}" for f in v) + "]", "current"))
            cur.execute("select setval('character_id_seq', (select max(id) from character))")
        raw.commit()
    finally:
        raw.close()


def run_jobs() -> None:
    from core.jobs import make_worker_app

    make_worker_app().run_worker(queues=None, wait=False, install_signal_handlers=False, concurrency=1,
                                 listen_notify=False, fetch_job_polling_interval=0.1)


COLD_SIZES = (1_000, 10_000)
COLD_WORKER = ("from core.jobs import make_worker_app; make_worker_app().run_worker(queues=['projections'], "
               "wait=False, install_signal_handlers=False, concurrency=1, listen_notify=False, "
               "fetch_job_polling_interval=0.1)")


def cold_fit_seconds() -> dict:
    """Request a fit and let a fresh process with an empty numba cache run it: the first map on a new machine."""
    import subprocess
    import sys
    import tempfile

    from core.vectors import projection

    out = {}
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(CENTRES, DIMS)).astype(np.float32)
    for n in COLD_SIZES:
        x, lab = vectors(n, rng, centres)
        load(np.arange(1, n + 1), x, lab, fresh=True)
        env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="numba-cold-"))
        t0 = time.perf_counter()
        req = projection.request_fit(space="text-local", subject_type="character", editor="bench",
                                     params=projection.ProjectionParams())
        subprocess.run([sys.executable, "-c", COLD_WORKER], cwd=ROOT, env=env, check=True)
        out[n] = time.perf_counter() - t0
        p = projection.get_projection(projection_id=req.id)
        assert p.status == "ready" and p.method in ("umap", "tsne"), (p.status, p.error)
        print(f"cold fit {n:>6,} points: {out[n]:6.1f} s request → ready in a fresh worker process with an empty "
              f"numba cache (job body {p.fit_seconds:.1f} s, {p.method})", flush=True)
        if n == 1_000:
            out["trust_1k"] = map_trust(p.id)
            print(f"  trustworthiness of that {p.method} map: {out['trust_1k'][0]:.3f} vs PCA-2D "
                  f"{out['trust_1k'][1]:.3f}", flush=True)
    return out


def map_trust(projection_id: int, sample: int | None = None) -> tuple[float, float]:
    """Trustworthiness (k=TRUST_K, cosine) of a stored map and of PCA-2D on the same vectors."""
    import sqlalchemy as sa
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    from core.vectors import projection
    from db.engine import session_scope

    vs = projection.load_vectors(space="text-local", subject_type="character")
    with session_scope() as s:
        rows = s.execute(sa.text("select subject_id, x, y from projection_point where projection_id=:p "
                                 "order by subject_id"), {"p": projection_id}).all()
    coords = np.array([(r.x, r.y) for r in rows], dtype=np.float32)
    pick = np.random.default_rng(0).choice(len(vs.ids), min(sample or len(vs.ids), len(vs.ids)), replace=False)
    pca2 = PCA(n_components=2, random_state=0).fit_transform(vs.vectors)
    return (trustworthiness(vs.vectors[pick], coords[pick], n_neighbors=TRUST_K, metric="cosine"),
            trustworthiness(vs.vectors[pick], pca2[pick], n_neighbors=TRUST_K, metric="cosine"))


def fit_via_queue(**params) -> tuple[float, object]:
    from core.vectors import projection

    t0 = time.perf_counter()
    req = projection.request_fit(space="text-local", subject_type="character", editor="bench",
                                 params=projection.ProjectionParams(**params))
    run_jobs()
    p = projection.get_projection(projection_id=req.id)
    assert p.status == "ready", p.error
    return time.perf_counter() - t0, p


def render_seconds() -> tuple[float, float]:
    """Map page through app.py's navigation in AppTest: first run in the process, then the median of 3."""
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(4):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["editor_name"] = "bench"
        at.switch_page("pages/map.py")
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
        assert at.get("plotly_chart"), "the map did not render"
    return times[0], statistics.median(times[1:])


def main() -> None:
    bench_database("bench_projection")
    import sqlalchemy as sa
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    from core.vectors import projection
    from db.engine import session_scope

    projection.ensure_numba_cache()
    rng = np.random.default_rng(42)
    centres = rng.normal(size=(CENTRES, DIMS)).astype(np.float32)
    cores = os.cpu_count()
    cold = cold_fit_seconds()

    # Warm-up above UMAP's exact-kNN limit (4,096 points) so nearest-neighbour descent is compiled too:
    # pynndescent generates those kernels at run time, so numba's cache cannot keep them between processes.
    x, lab = vectors(WARMUP, rng, centres)
    load(np.arange(1, WARMUP + 1), x, lab, fresh=True)
    warm_s, _ = fit_via_queue()
    print(f"warm-up: first {WARMUP:,}-point map in this process {warm_s:.1f} s (numba JIT; what the first map "
          f"after a worker starts costs; NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR')}); {cores} CPU core(s)")

    fit_s: dict[int, float] = {}
    results: dict = {}
    for n in SIZES:
        x, lab = vectors(n, rng, centres)
        load(np.arange(1, n + 1), x, lab, fresh=True)
        fit_s[n], p = fit_via_queue()
        print(f"fit {n:>6,} points: {fit_s[n]:6.1f} s request → ready through the job queue "
              f"(job body {p.fit_seconds:.1f} s: load vectors, PCA-50, UMAP, KMeans, save)")
        if n == 10_000:
            new, new_lab = vectors(100, rng, centres)
            load(np.arange(n + 1, n + 101), new, new_lab, fresh=False)
            t0 = time.perf_counter()
            projection.request_placement(projection_id=p.id, editor="bench")
            run_jobs()
            results["transform_s_100"] = time.perf_counter() - t0
            st = projection.staleness(projection_id=p.id)
            assert st.n_transform == 100 and not st.needs_placement
            print(f"transform: 100 new points placed in {results['transform_s_100']:.1f} s through the queue "
                  f"(load model, transform, write), no refit")
            render_cold, render_warm = render_seconds()
            results["render_s_10k"], results["render_cold_s_10k"] = render_warm, render_cold
            print(f"page render, cached {n + 100:,}-point map (AppTest): {render_warm:.2f} s warm (median of 3), "
                  f"{render_cold:.2f} s first run in the process (imports)")

            model = projection.load_model(p)
            vs = projection.load_vectors(space="text-local", subject_type="character")
            with session_scope() as s:
                rows = s.execute(sa.text("select subject_id, x, y from projection_point where projection_id=:p "
                                         "order by subject_id"), {"p": p.id}).all()
            coords = np.array([(r.x, r.y) for r in rows], dtype=np.float32)
            assert len(coords) == len(vs.ids) and model["method"] == "umap"
            sample = np.random.default_rng(0).choice(len(vs.ids), TRUST_SAMPLE, replace=False)
            pca2 = PCA(n_components=2, random_state=0).fit_transform(vs.vectors)
            results["trust_umap"] = trustworthiness(vs.vectors[sample], coords[sample], n_neighbors=TRUST_K,
                                                    metric="cosine")
            results["trust_pca"] = trustworthiness(vs.vectors[sample], pca2[sample], n_neighbors=TRUST_K,
                                                   metric="cosine")
            print(f"trustworthiness (k={TRUST_K}, cosine, subsample of {TRUST_SAMPLE:,} of {len(vs.ids):,} points): "
                  f"UMAP {results['trust_umap']:.3f} vs PCA-2D {results['trust_pca']:.3f}")

    figures = {"fit_cold_s_1k": round(cold[1_000], 2), "fit_cold_s_10k": round(cold[10_000], 2),
               "trust_small_1k": round(cold["trust_1k"][0], 4), "trust_pca_1k": round(cold["trust_1k"][1], 4),
               "fit_s_2k": round(fit_s[2_000], 2), "fit_s_10k": round(fit_s[10_000], 2),
               "fit_s_50k": round(fit_s[50_000], 2), "transform_s_100": round(results["transform_s_100"], 2),
               "render_s_10k": round(results["render_s_10k"], 3), "trust_umap": round(results["trust_umap"], 4),
               "trust_pca": round(results["trust_pca"], 4), "render_cold_s_10k": round(results["render_cold_s_10k"], 3),
               "warmup_s_5k": round(warm_s, 2), "cores": cores, "trust_sample": TRUST_SAMPLE}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
