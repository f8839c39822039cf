"""What bounding template renders costs: a render in the child-process pool vs. in-process,
from 1 and from 10 threads (a worker's slots), and how fast a bomb is refused / a runaway is stopped.

No database needed: renders use the built-in sample context.
"""
from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import _setup  # noqa: F401 (puts the project on sys.path)

N = 500


def main() -> None:
    from core.ai import prompt_registry, template_sandbox
    from core.ai.prompt_context import SAMPLE_CONTEXT
    from core.settings import get_settings

    body = prompt_registry.file_default("variation_prompt")
    prompt_registry.render_body(body, SAMPLE_CONTEXT)  # start the pool's first child

    def timed(fn, n=N) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return out

    child = timed(lambda: prompt_registry.render_body(body, SAMPLE_CONTEXT))
    inproc = timed(lambda: template_sandbox.render(body, SAMPLE_CONTEXT))
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=10) as ex:
        list(ex.map(lambda _: prompt_registry.render_body(body, SAMPLE_CONTEXT), range(N)))
    threaded = (time.perf_counter() - t) * 1000 / N

    def refusal_ms(bomb: str) -> float:
        t = time.perf_counter()
        try:
            prompt_registry.render_body(bomb, SAMPLE_CONTEXT)
        except prompt_registry.TemplateProblem:
            pass
        return (time.perf_counter() - t) * 1000

    bomb = refusal_ms("{{ 'a' * 10**9 }}")
    runaway = refusal_ms("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}")
    after = statistics.median(timed(lambda: prompt_registry.render_body(body, SAMPLE_CONTEXT), 20))

    figures = {
        "renders": N, "pool_children": get_settings().template_render_processes,
        "child_render_p50_ms": round(statistics.median(child), 3),
        "child_render_p95_ms": round(statistics.quantiles(child, n=20)[18], 3),
        "in_process_render_p50_ms": round(statistics.median(inproc), 3),
        "ten_threads_ms_per_render": round(threaded, 3),
        "constant_bomb_refused_ms": round(bomb, 1),
        "runaway_stopped_ms": round(runaway, 1),
        "render_after_replacement_p50_ms": round(after, 3),
    }
    print(f"Template renders ({N} of the variation_prompt default, sample context)")
    print(f"  child pool     p50 {figures['child_render_p50_ms']} ms, p95 {figures['child_render_p95_ms']} ms")
    print(f"  in-process     p50 {figures['in_process_render_p50_ms']} ms (layer (a) alone, no hard limit)")
    print(f"  10 threads     {figures['ten_threads_ms_per_render']} ms per render")
    print(f"  'a' * 10**9    refused in {figures['constant_bomb_refused_ms']} ms")
    print(f"  runaway loop   stopped in {figures['runaway_stopped_ms']} ms (TEMPLATE_RENDER_TIMEOUT_S "
          f"{get_settings().template_render_timeout_s:g} s), next render p50 {figures['render_after_replacement_p50_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
