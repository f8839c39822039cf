"""Similarity search over 100k synthetic 384-d vectors in the workbench's embedding table.

Vectors are clustered (like real embeddings: 500 centres + noise), stored as
space 'text-local' so the migration's partial HNSW index (cosine opclass on
`vector::vector(384)`) is the one being measured. Prints HNSW build time,
p50/p95 latency, recall@10 against exact search, the same with a filter that
matches ~10% of rows, and whether the plan uses the index.
"""
from __future__ import annotations

import os
import json
import statistics
import time

import numpy as np
import sqlalchemy as sa

from _setup import bench_database

N, DIMS, K, QUERIES = 100_000, 384, 10, 200
EF_SEARCH = int(os.environ.get("EF_SEARCH", "400"))


def main() -> None:
    bench_database("bench_search")
    from db.engine import get_engine

    rng = np.random.default_rng(42)
    centres = rng.normal(size=(500, DIMS)).astype(np.float32)
    data = centres[rng.integers(0, 500, N)] + 0.35 * rng.normal(size=(N, DIMS)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.choice(N, QUERIES, replace=False)] + 0.05 * rng.normal(size=(QUERIES, DIMS)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    in_filter = (np.arange(N) % 10) == 0  # subject_type 'variation' for every tenth row (~10%)

    engine = get_engine()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("drop index if exists ix_embedding_hnsw_text_local")
            t0 = time.perf_counter()
            with cur.copy("copy embedding (subject_type, subject_id, space, model_id, dims, content_hash, vector, "
                          "status) from stdin") as cp:
                for i in range(N):
                    vec = "[" + ",".join(f"{x:.6f}" for x in data[i]) + "]"
                    cp.write_row(("variation" if in_filter[i] else "character", i, "text-local", "bench", DIMS,
                                  None, vec, "current"))
            raw.commit()
            load_s = time.perf_counter() - t0
            cur.execute("set maintenance_work_mem = '1GB'")
            cur.execute("set max_parallel_maintenance_workers = 1")
            t0 = time.perf_counter()
            cur.execute("create index ix_embedding_hnsw_text_local on embedding using hnsw "
                        "((vector::vector(384)) vector_cosine_ops) where space = 'text-local'")
            raw.commit()
            build_s = time.perf_counter() - t0
            cur.execute("analyze embedding")
            raw.commit()
    finally:
        raw.close()

    sims = queries @ data.T
    exact = np.argsort(-sims, axis=1)[:, :K]
    filtered_ids = np.flatnonzero(in_filter)
    exact_f = filtered_ids[np.argsort(-(queries @ data[filtered_ids].T), axis=1)[:, :K]]

    from core.vectors.similarity import SearchFilter, _where, nearest, nearest_sql

    def literal(v: np.ndarray) -> str:
        return "[" + ",".join(f"{x:.6f}" for x in v) + "]"

    strategies: dict[str, set[str]] = {}

    def run(types: tuple[str, ...], truth: np.ndarray) -> tuple[list[float], float, str]:
        """Queries go through core.vectors.similarity.nearest, the function the Search page uses (it picks ef_search
        from the filter's selectivity, or exact search for narrow filters)."""
        where, params = _where(SearchFilter(), None)
        with engine.connect() as conn:
            plan = "\n".join(r[0] for r in conn.execute(
                sa.text("explain " + nearest_sql(DIMS, where, exact=False)),
                {**params, "q": literal(queries[0]), "s": "text-local", "types": list(types), "k": K}))
        lat, recalls = [], []
        for qi in range(QUERIES):
            q = literal(queries[qi])
            t = time.perf_counter()
            res = nearest(vector=q, space="text-local", subject_types=types, k=K, ef_search=EF_SEARCH)
            lat.append((time.perf_counter() - t) * 1000)
            strategies.setdefault(",".join(types), set()).add(res.strategy)
            recalls.append(len({h.subject_id for h in res.hits} & set(truth[qi].tolist())) / K)
        return lat, float(np.mean(recalls)), plan

    lat, recall, plan = run(("character", "variation"), exact)
    flat, frecall, fplan = run(("variation",), exact_f)

    def pct(v, p):
        return round(statistics.quantiles(v, n=100)[p - 1], 3)

    figures = {
        "n": N, "load_s": round(load_s, 1), "build_s": round(build_s, 1),
        "p50_ms": round(statistics.median(lat), 3), "p95_ms": pct(lat, 95), "recall_at_10": round(recall, 4),
        "filtered_p50_ms": round(statistics.median(flat), 3), "filtered_p95_ms": pct(flat, 95),
        "filtered_recall_at_10": round(frecall, 4),
        "index_scan": "ix_embedding_hnsw_text_local" in plan, "filtered_index_scan": "ix_embedding_hnsw_text_local" in fplan,
        "strategy": sorted(strategies["character,variation"]), "filtered_strategy": sorted(strategies["variation"]),
    }
    print(f"{N} vectors × {DIMS}d loaded in {figures['load_s']} s; HNSW (m=16, ef_construction=64) built in "
          f"{figures['build_s']} s")
    print(f"top-{K}, {figures['strategy']}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
          f"recall@10 {figures['recall_at_10']} (exact search as truth); index scan: {figures['index_scan']}")
    print(f"filter matching 10%, {figures['filtered_strategy']}: p50 {figures['filtered_p50_ms']} ms, "
          f"p95 {figures['filtered_p95_ms']} ms, recall@10 {figures['filtered_recall_at_10']}; "
          f"index scan: {figures['filtered_index_scan']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
