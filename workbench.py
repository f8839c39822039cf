"""Command line for the workbench: `python workbench.py serve|worker|migrate|demo|streamlit`.

`serve` owns the embedded database: it starts Postgres once, applies the
migrations, and hands DATABASE_URL to the Streamlit server (and, later, the
worker) so child processes never race to start the server themselves.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from core.logging_setup import configure_logging

log = logging.getLogger("workbench")


def _prepare_database(*, own_embedded: bool = False) -> str:
    from db.engine import database_url
    from db.migrate import upgrade

    t0 = time.perf_counter()
    url = database_url(own_embedded=own_embedded)
    upgrade(url)
    log.info("database ready and migrated in %.1f s", time.perf_counter() - t0)
    return url


def cmd_serve(args: argparse.Namespace) -> int:
    url = _prepare_database(own_embedded=True)
    env = dict(os.environ, DATABASE_URL=url)
    cmd = [sys.executable, "workbench.py", "streamlit", "--server.port", str(args.port)]
    log.info("starting Streamlit on port %s", args.port)
    from core.settings import get_settings

    worker = None
    if get_settings().embedded_worker:
        log.info("starting the embedded worker")
        worker = subprocess.Popen([sys.executable, "workbench.py", "worker"], env=env)
    proc = subprocess.Popen(cmd, env=env)

    def _on_term(signum, frame):  # a service manager's stop: same clean shutdown as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait(timeout=20)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


def run_streamlit(extra_args: list[str]) -> int:
    """`streamlit run app.py` with the pages/ folder's v1 auto-discovery switched off.

    Streamlit treats a folder named pages/ as old-style pages until app.py has
    called st.navigation once in the process; a deep link opened first would
    run a page without app.py's navigation. Setting the flag up front makes
    every request go through app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", "app.py", *extra_args]
    return cli.main()


def cmd_worker(args: argparse.Namespace) -> int:
    """A job worker; run more of these on other machines with the same DATABASE_URL.

    One process, one loop per lane (core.jobs.worker_lanes): slots run up to the generation bound in their
    own loop, embedding and map jobs one at a time in another, so a slot never waits behind them. The text
    model and UMAP's compiled kernels are loaded in the background at start, so the first embedding or map
    job does not pay for them either.
    """
    import asyncio
    import threading

    from core import generation
    from core.jobs import make_worker_app, worker_lanes
    from core.settings import get_settings

    if not os.environ.get("DATABASE_URL"):
        _prepare_database()
    settings = get_settings()
    stop = threading.Event()

    def recovery_loop() -> None:
        while not stop.wait(settings.recovery_interval_s):
            try:
                generation.recover_stalled(seconds_since_heartbeat=settings.stalled_after_s)
            except Exception:  # keep the loop alive; the next round retries
                log.exception("stalled-job recovery failed")

    generation.recover_stalled(seconds_since_heartbeat=settings.stalled_after_s)
    app = make_worker_app()
    threading.Thread(target=recovery_loop, daemon=True, name="recovery").start()
    _start_warmups()
    lanes = worker_lanes(generation_concurrency=args.concurrency or settings.generation_concurrency)
    log.info("worker starting: %s", ", ".join(f"{ln.name} {'+'.join(ln.queues)} ×{ln.concurrency}" for ln in lanes))
    options = dict(name=args.name, wait=True, install_signal_handlers=False,
                   update_heartbeat_interval=min(10.0, settings.stalled_after_s / 3),
                   stalled_worker_timeout=settings.stalled_after_s)
    try:
        asyncio.run(_run_lanes(app, lanes, options))
    finally:
        stop.set()
    return 0


async def _run_lanes(app, lanes, options: dict) -> None:
    """Run one procrastinate worker per lane on one event loop; SIGINT/SIGTERM (or one lane failing)
    stops them all gracefully: running jobs finish, nothing new is taken."""
    import asyncio

    async with app.open_async():
        tasks = [asyncio.create_task(app.run_worker_async(queues=list(ln.queues), concurrency=ln.concurrency,
                                                          **options), name=f"lane-{ln.name}") for ln in lanes]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: [t.cancel() for t in tasks])
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for ln, res in zip(lanes, results):
            if isinstance(res, Exception) and not isinstance(res, asyncio.CancelledError):
                log.error("worker lane %s stopped with an error: %r", ln.name, res)
                raise res


def _start_warmups() -> None:
    """One background thread loads the text model, then, once no slot is waiting or running, compiles
    UMAP's kernels (numba's compile holds the GIL and a CPU for seconds: slots come first). EMBEDDING_WARMUP=false
    skips both (tests that start many short-lived workers)."""
    import threading

    from core import embedding_spaces, jobs, projection
    from core.settings import get_settings

    def warm() -> None:
        try:
            embedding_spaces.warm_up(wait=True)
            while jobs.pending_jobs(jobs.GENERATE_SLOT):  # compiling now would slow slots down: wait
                time.sleep(2)
        except Exception:  # the first embedding job loads it (and reports the error) instead
            log.exception("text model warm-up failed")
        projection.warm_up()

    if get_settings().embedding_warmup:
        threading.Thread(target=warm, name="warmup", daemon=True).start()


def cmd_migrate(_args: argparse.Namespace) -> int:
    _prepare_database()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _prepare_database()
    from core.demo import load_demo_cast

    res = load_demo_cast(editor=args.editor)
    print(f"demo cast: {res.styles_added} styles and {res.characters_added} characters added, "
          f"{res.characters_skipped} already present")
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(prog="workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start database, migrate, serve the app")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8501")))
    p.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("worker", help="run a background job worker")
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--name", default=None)
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("demo", help="load the demo cast")
    p.add_argument("--editor", default="demo")
    p.set_defaults(func=cmd_demo)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "streamlit":
        return run_streamlit(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
