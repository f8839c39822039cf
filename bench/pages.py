"""Every page at studio scale: 1,000 characters × 10 variations, rendered with Streamlit's AppTest.

Prints each page's first render (fresh session) and second render (the same session rerun, "warm") and the
process's peak RSS (AppTest runs the pages in this process, as the server would), then one JSON line with
`max_page_s_10k` (the slowest warm render) and per-page figures.

    .venv/bin/python bench/pages.py [--characters 1000]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from _setup import ROOT, bench_database


TIMEOUT_S = 120
PAGES = ["pages/home.py", "pages/characters.py", "pages/styles.py", "pages/review.py", "pages/search.py",
         "pages/embeddings.py", "pages/map.py", "pages/prompts.py", "pages/activity.py", "pages/duplicates.py",
         "pages/experiments.py", "pages/audit.py", "pages/members.py"]


def _render(page: str, params: dict[str, str]) -> tuple[float, float, list[str]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT_S)
    at.session_state["editor_name"] = "Bench Editor"
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(page)
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.run()
    second = time.perf_counter() - t0
    return first, second, [str(e.value) for e in at.exception]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--characters", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=None, help="page names to render, e.g. review characters")
    args = parser.parse_args()
    bench_database("workbench_bench_pages")
    from bench._fill import fill_cast
    from core import characters

    t0 = time.perf_counter()
    n = fill_cast(characters=args.characters)
    print(f"filled {args.characters} characters, {n} variations in {time.perf_counter() - t0:.1f} s")
    some = characters.list_characters()[0].id
    from core.vectors import embedding_spaces

    t0 = time.perf_counter()  # a server loads the text model once, in the background, at start: do it up front
    embedding_spaces.get_embedder(embedding_spaces.text_space()).load()
    print(f"text model loaded in {time.perf_counter() - t0:.1f} s (not part of any page's time)")
    targets = [(p, {}) for p in PAGES] + [("pages/characters.py", {"character": str(some)})]
    figures: dict[str, dict[str, float]] = {}
    failures: dict[str, list[str]] = {}
    for page, params in targets:
        name = page.removeprefix("pages/").removesuffix(".py") + ("-detail" if params else "")
        if args.only and name not in args.only:
            continue
        try:
            first, second, errors = _render(page, params)
        except RuntimeError as err:  # AppTest's timeout: report the page as failed, keep measuring the others
            first = second = float(TIMEOUT_S)
            errors = [str(err)]
        figures[name] = {"first_s": round(first, 3), "second_s": round(second, 3)}
        if errors:
            failures[name] = errors
        print(f"{name:<18} first {first:6.2f} s   second {second:6.2f} s" + ("   EXCEPTION" if errors else ""))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the rendering process: {rss_mb:.0f} MB")
    for name, errors in failures.items():
        print(f"{name}: {errors}")
    print(json.dumps({"max_page_s_10k": max(f["second_s"] for f in figures.values()),
                      "max_first_page_s_10k": max(f["first_s"] for f in figures.values()),
                      "characters": args.characters, "variations": n, "peak_rss_mb": round(rss_mb),
                      "pages": figures, "exceptions": sorted(failures)}))

if __name__ == "__main__":
    main()
