"""What the engine, registry and call log add per AI call (offline provider).

Runs N calls of suggest_names through the engine and N direct calls of the
offline provider with an already-rendered prompt; the difference per call is
the overhead (validation, context from the database, prompt resolution and
render, JSON parse, two ai_call writes).
"""
from __future__ import annotations

import json
import statistics
import time

from _setup import bench_database

N = 1000


def main() -> None:
    bench_database("bench_ai_overhead")
    from core.ai import ai_functions, prompt_registry
    from core.ai.prompt_context import SAMPLE_CONTEXT
    from core.ai.providers import OfflineProvider

    provider = OfflineProvider()
    prompt = prompt_registry.render_body(prompt_registry.file_default("character_name"), SAMPLE_CONTEXT)
    ai_functions.suggest_names(description="warm-up", traits=["x"], style_id=None, requested_by="bench")

    t0 = time.perf_counter()
    for i in range(N):
        provider.complete_json(prompt=prompt + str(i), task="character_name", context=SAMPLE_CONTEXT)
    direct_s = time.perf_counter() - t0

    per_call: list[float] = []
    t0 = time.perf_counter()
    for i in range(N):
        t = time.perf_counter()
        ai_functions.suggest_names(description=f"bench character {i}", traits=["brave"], style_id=None,
                                   requested_by="bench")
        per_call.append((time.perf_counter() - t) * 1000)
    engine_s = time.perf_counter() - t0

    overhead_ms = (engine_s - direct_s) / N * 1000
    figures = {
        "calls": N,
        "direct_provider_ms_per_call": round(direct_s / N * 1000, 3),
        "engine_ms_per_call": round(engine_s / N * 1000, 3),
        "engine_p50_ms": round(statistics.median(per_call), 3),
        "engine_p95_ms": round(statistics.quantiles(per_call, n=20)[18], 3),
        "overhead_ms_per_call": round(overhead_ms, 3),
    }
    print(f"AI path overhead over {N} offline calls")
    print(f"  provider alone        {figures['direct_provider_ms_per_call']:8.3f} ms/call")
    print(f"  through the engine    {figures['engine_ms_per_call']:8.3f} ms/call "
          f"(p50 {figures['engine_p50_ms']:.3f}, p95 {figures['engine_p95_ms']:.3f})")
    print(f"  overhead              {figures['overhead_ms_per_call']:8.3f} ms/call "
          "(validate, DB context, registry resolve + sandboxed render, parse, 2 ai_call writes)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
