"""Generation throughput with a provider of fixed latency L (the offline provider with OFFLINE_LATENCY_S).

1. One run of ten slots with one worker at the default bound: wall / L
   (target <= 1.5; sequential would be 10).
2. 50 characters (500 slots) with two workers at the default bound: slots/s.
3. "Generate for all shown" on 300 characters: seconds to queue 300 runs (3,000 slots and jobs), no worker.
Workers are real `workbench.py worker` subprocesses on the bench database.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from _setup import ROOT, bench_database

LATENCY_S = 2.0
THROUGHPUT_LATENCY_S = 1.0
CHARACTERS = 50
BULK = 300


def start_workers(n: int, latency: float) -> list[subprocess.Popen]:
    env = dict(os.environ, OFFLINE_LATENCY_S=str(latency), LOG_LEVEL="WARNING")
    return [subprocess.Popen([sys.executable, "workbench.py", "worker", "--name", f"bench-{i}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        w.terminate()
    for w in workers:
        w.wait(timeout=30)


def wait_done(run_ids: list[int], timeout: float) -> None:
    from core import generation

    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        pending = {r for r in pending if generation.run_status(run_id=r).status in ("queued", "running")}
        time.sleep(0.05)
    if pending:
        raise SystemExit(f"runs did not finish in {timeout} s: {sorted(pending)[:5]}…")


def main() -> None:
    bench_database("bench_generation")
    from core import characters, generation
    from core.characters import CharacterInput
    from core.settings import get_settings

    bound = get_settings().generation_concurrency
    cast = [characters.create_character(data=CharacterInput(name=f"Bench Character {i:03d}"), editor="bench")
            for i in range(CHARACTERS)]

    workers = start_workers(1, LATENCY_S)
    time.sleep(3)  # worker start-up is not part of the measurement
    try:
        t0 = time.perf_counter()
        req = generation.request_run(character_id=cast[0].id, requested_by="bench")
        wait_done([req.run_id], timeout=120)
        wall = time.perf_counter() - t0
    finally:
        stop(workers)
    assert generation.run_status(run_id=req.run_id).counts == {"completed": 10}

    workers = start_workers(2, THROUGHPUT_LATENCY_S)
    time.sleep(3)
    try:
        t0 = time.perf_counter()
        reqs = generation.request_runs(character_ids=[c.id for c in cast[1:]], requested_by="bench")
        wait_done([r.run_id for r in reqs], timeout=600)
        tp_wall = time.perf_counter() - t0
    finally:
        stop(workers)
    bulk = [characters.create_character(data=CharacterInput(name=f"Bulk Character {i:03d}"), editor="bench")
            for i in range(BULK)]
    t0 = time.perf_counter()
    bulk_reqs = generation.request_runs(character_ids=[c.id for c in bulk], requested_by="bench")
    queue_s = time.perf_counter() - t0
    assert all(r.created for r in bulk_reqs)
    slots = 10 * len(reqs)
    completed = sum(generation.run_status(run_id=r.run_id).counts.get("completed", 0) for r in reqs)
    figures = {
        "latency_s": LATENCY_S,
        "bound": bound,
        "wall_s": round(wall, 3),
        "wall_over_latency": round(wall / LATENCY_S, 3),
        "throughput_latency_s": THROUGHPUT_LATENCY_S,
        "throughput_slots": slots,
        "throughput_completed": completed,
        "throughput_wall_s": round(tp_wall, 2),
        "slots_per_s_two_workers": round(completed / tp_wall, 2),
        "ideal_slots_per_s_two_workers": round(2 * bound / THROUGHPUT_LATENCY_S, 2),
        "queue_300_s": round(queue_s, 3),
    }
    print(f"One run of 10 slots, provider latency L = {LATENCY_S} s, bound {bound}, one worker:")
    print(f"  wall {figures['wall_s']} s = {figures['wall_over_latency']} × L  (target ≤ 1.5; sequential = 10)")
    print(f"{len(reqs)} characters × 10 slots, L = {THROUGHPUT_LATENCY_S} s, two workers:")
    print(f"  {completed}/{slots} slots in {figures['throughput_wall_s']} s = {figures['slots_per_s_two_workers']} slots/s "
          f"(ideal {figures['ideal_slots_per_s_two_workers']})")
    print(f"Queue {BULK} runs at once (\"Generate for all shown\"): {figures['queue_300_s']} s (target ≤ 2)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
