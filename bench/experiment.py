"""Prompt experiment throughput and compare-view render time.

1. A 12 characters × 3 slots × 2 versions experiment (72 images) on one real worker with the
   offline provider at a fixed latency L per image: wall time over the ideal ceil(72 / concurrency) × L
   (target <= 1.3).
2. The compare view of that experiment rendered by AppTest (blind mode): seconds per render
   (target <= 2), median of a few renders after a first warm one.
"""
from __future__ import annotations

import json
import math
import statistics
import time

from _setup import ROOT, bench_database
from bench.generation import start_workers, stop

LATENCY_S = 1.0
CHARACTERS, SLOTS = 12, ["portrait_front", "action_pose", "outfit_variation"]


def wait_for_worker(timeout: float = 180) -> None:
    """Until the worker is up and has embedded the new cast (saving a character queues an embedding job, and
    the first one loads the text model): start-up and model load are not part of the measurement."""
    import sqlalchemy as sa

    from db.engine import session_scope

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as s:
            workers = s.execute(sa.text("select count(*) from procrastinate_workers")).scalar_one()
            queued = s.execute(sa.text("select count(*) from procrastinate_jobs where status in ('todo', 'doing')"))
            if workers and not queued.scalar_one():
                return
        time.sleep(0.2)
    raise SystemExit("the worker did not start")


def main() -> None:
    bench_database("bench_experiment")
    from core import characters, experiments
    from core.ai import prompt_registry
    from core.characters import CharacterInput
    from core.experiments import ArmSpec
    from core.settings import get_settings

    bound = get_settings().generation_concurrency
    cast = [characters.create_character(data=CharacterInput(name=f"Bench Character {i:02d}"), editor="bench")
            for i in range(CHARACTERS)]
    panel = experiments.create_panel(name="bench", character_ids=[c.id for c in cast], slot_keys=SLOTS, editor="bench")
    draft = prompt_registry.file_default("variation_prompt") + "\nBench draft: clean ink lines."

    workers = start_workers(1, LATENCY_S)
    wait_for_worker()
    try:
        t0 = time.perf_counter()
        exp = experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("draft", body=draft)],
                                            editor="bench")
        deadline = time.monotonic() + 600
        while experiments.progress(experiment_id=exp.id).active and time.monotonic() < deadline:
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    finally:
        stop(workers)
    pr = experiments.progress(experiment_id=exp.id)
    assert pr.counts == {"completed": 72}, pr.counts
    ideal = math.ceil(72 / bound) * LATENCY_S
    cells = experiments.cells(experiment_id=exp.id)
    events = sorted([(c.started_at, 1) for c in cells] + [(c.finished_at, -1) for c in cells])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    first_start = min(c.started_at for c in cells) - min(c.created_at for c in cells)
    print(f"first cell started {first_start.total_seconds():.2f} s after the experiment was queued")
    mean_ms = statistics.mean(c.duration_ms for c in cells)
    print(f"cells: mean engine time {mean_ms:.0f} ms per image (L = {LATENCY_S * 1000:.0f} ms), peak in flight {peak}")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["editor_name"] = "bench"
    at.switch_page("pages/experiments.py")
    at.run()  # first render: imports and caches
    assert not at.exception, at.exception
    times = []
    for _ in range(5):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
    render = statistics.median(times)
    print(f"72 images, concurrency {bound}, L = {LATENCY_S} s: wall {wall:.2f} s, ideal {ideal:.1f} s, "
          f"wall/ideal {wall / ideal:.2f} (target <= 1.3)")
    print(f"compare view render (AppTest, median of 5): {render:.3f} s (target <= 2)")
    print(json.dumps({"cells": pr.total, "concurrency": bound, "latency_s": LATENCY_S, "wall_s": round(wall, 2),
                      "ideal_s": ideal, "wall_over_ideal": round(wall / ideal, 3),
                      "compare_render_s": round(render, 3)}))


if __name__ == "__main__":
    main()
