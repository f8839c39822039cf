"""Command line for the workbench: `python workbench.py serve|worker|migrate|demo|streamlit`.

`serve` owns the embedded database: it starts Postgres once, applies the
migrations, and hands DATABASE_URL to the Streamlit server (and, later, the
worker) so child processes never race to start the server themselves.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _die_with_parent() -> None:
    """preexec_fn for the launcher's children: SIGTERM when the launcher dies, even by kill -9.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere the children are still in the launcher's session."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(1)


def _stop_child(proc: subprocess.Popen, *, timeout: float, name: str) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s; killing it", name, timeout)
        proc.kill()
        proc.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from core.team.binding import BindRefused, check_binding

    address = get_settings().server_address if args.address is None else args.address
    try:  # before the database starts: a refused bind fails in a second, with the reason
        binding = check_binding(address=address)
    except BindRefused as err:
        print(f"workbench: {err}", file=sys.stderr)
        return 2
    url = _prepare_database(own_embedded=True)
    env = dict(os.environ, DATABASE_URL=url)
    cmd = [sys.executable, "workbench.py", "streamlit", "--server.port", str(args.port),
           "--server.address", binding.address]
    log.info("starting Streamlit on %s:%s (%s)", binding.address, args.port,
             "sign-in on" if binding.auth_enabled else "local mode: sign-in off")

    settings = get_settings()
    worker = None
    if settings.embedded_worker:
        log.info("starting the embedded worker")
        worker = subprocess.Popen([sys.executable, "workbench.py", "worker"], env=env, preexec_fn=_die_with_parent)
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)

    def _on_term(signum, frame):  # a service manager's stop: same clean shutdown as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # the worker bounds its own stop (WORKER_STOP_TIMEOUT_S); the kill timeout is longer than that bound
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if worker is not None:
            worker.terminate()
        _stop_child(proc, timeout=20, name="streamlit")
        if worker is not None:
            _stop_child(worker, timeout=settings.worker_stop_bound_s + 10, name="worker")


def upload_limit_mb() -> int:
    """Streamlit's upload widget states (and enforces) a limit in whole MB: MAX_UPLOAD_BYTES, rounded up,
    so the widget never promises more than the server accepts by more than a fraction of a MB."""
    from core.settings import get_settings

    return max(1, math.ceil(get_settings().max_upload_bytes / (1024 * 1024)))


def run_streamlit(extra_args: list[str]) -> int:
    """`streamlit run app.py` with the pages/ folder's v1 auto-discovery switched off.

    Streamlit treats a folder named pages/ as old-style pages until app.py has
    called st.navigation once in the process; a deep link opened first would
    run a page without app.py's navigation. Setting the flag up front makes
    every request go through app.py.

    The bind address is checked (core.team.binding: loopback unless sign-in is on or explicitly waived)
    and Streamlit is pointed at the secrets file core reads, so both agree on whether sign-in is on.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    from core.team.binding import BindRefused, streamlit_args

    try:
        extra_args, _binding = streamlit_args(extra_args)
    except BindRefused as err:
        print(f"workbench: {err}", file=sys.stderr)
        return 2
    PagesManager.uses_pages_directory = False
    if not any(a.startswith("--server.maxUploadSize") for a in extra_args):
        extra_args = [*extra_args, "--server.maxUploadSize", str(upload_limit_mb())]
    sys.argv = ["streamlit", "run", "app.py", *extra_args]
    return cli.main()


def cmd_worker(args: argparse.Namespace) -> int:
    """A job worker; run more of these on other machines with the same DATABASE_URL.

    Stopping is bounded: on SIGTERM/SIGINT no new job is fetched, running slots get
    WORKER_STOP_TIMEOUT_S (capped below STALLED_AFTER_S) to finish, then the rest are
    handed to new jobs (best effort; recovery does it otherwise) and the process exits,
    even if provider calls hang. A worker whose database goes away restarts its job loop
    until it comes back.

    One process, one loop per lane (core.jobs.worker_lanes): slots run up to the generation bound in their
    own loop, embedding and map jobs one at a time in another, so a slot never waits behind them. The text
    model and UMAP's compiled kernels are loaded in the background at start, so the first embedding or map
    job does not pay for them either.
    """
    import asyncio
    import threading

    from core import recovery, tasks
    from core.jobs import Lane, make_worker_app, worker_lanes
    from core.settings import get_settings
    from db.engine import database_unavailable

    if not os.environ.get("DATABASE_URL"):
        _prepare_database()
    settings = get_settings()
    bound = settings.worker_stop_bound_s
    stopping, finished = threading.Event(), threading.Event()
    current: dict = {}

    def recovery_pass(*, full: bool = False) -> None:
        try:
            recovery.recover(seconds_since_heartbeat=settings.stalled_after_s, full_scan=full)
        except Exception as err:  # the next round retries
            if database_unavailable(err):
                log.warning("recovery pass skipped, database unavailable (%s); retrying in %g s",
                            err.__class__.__name__, settings.recovery_interval_s)
            else:
                log.exception("recovery pass failed; retrying in %g s", settings.recovery_interval_s)

    def recovery_loop() -> None:
        while not stopping.wait(settings.recovery_interval_s):
            recovery_pass()

    def abandon_after_bound() -> None:
        if finished.wait(bound):
            return
        jobs = tasks.in_flight_slot_jobs()
        log.warning("stop bound of %g s reached with %d slot(s) running: abandoning them to recovery", bound, len(jobs))
        releaser = threading.Thread(target=lambda: recovery.release_jobs(job_ids=jobs, reason="worker stopped; retried"),
                                    daemon=True)
        releaser.start()
        releaser.join(timeout=3)  # best effort: with the database down, recovery does it later
        logging.shutdown()
        os._exit(0)

    def on_signal(signum, frame) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("stop requested (signal %d): running slots get %g s to finish", signum, bound)
        threading.Thread(target=abandon_after_bound, daemon=True, name="stop-bound").start()
        loop, task = current.get("loop"), current.get("task")
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)  # procrastinate: stop fetching, wait for running jobs

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    recovery_pass(full=True)
    try:
        from core.vectors import embeddings

        embeddings.queue_backfill_if_images_behind()  # e.g. a new default image space after an upgrade
    except Exception as err:  # the backfill is a convenience; a worker must start without it
        log.error("could not check the image embeddings at start (the Embeddings page can queue it): %s", err)
    threading.Thread(target=recovery_loop, daemon=True, name="recovery").start()
    _start_warmups()
    wanted = {q.strip() for q in args.queues.split(",") if q.strip()} if args.queues else None
    lanes = [ln for ln in (Lane(ln.name, tuple(q for q in ln.queues if wanted is None or q in wanted), ln.concurrency)
                           for ln in worker_lanes(generation_concurrency=args.concurrency
                                                  or settings.generation_concurrency)) if ln.queues]
    log.info("worker starting: %s", ", ".join(f"{ln.name} {'+'.join(ln.queues)} ×{ln.concurrency}" for ln in lanes))
    options = dict(name=args.name, wait=True, install_signal_handlers=False,
                   update_heartbeat_interval=min(10.0, settings.stalled_after_s / 3),
                   stalled_worker_timeout=settings.stalled_after_s)

    async def run_once() -> None:
        app = make_worker_app()
        async with app.open_async():
            task = asyncio.create_task(_run_lanes(app, lanes, options))
            current.update(loop=asyncio.get_running_loop(), task=task)
            if stopping.is_set():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not stopping.is_set():
                    raise
            finally:
                current.clear()

    try:
        while not stopping.is_set():
            try:
                asyncio.run(run_once())
            except Exception as err:  # the job loop lost its database (or a side task died): start it again
                log.error("worker loop stopped (%s: %s); restarting in 2 s", err.__class__.__name__, err)
            else:
                if not stopping.is_set():
                    log.warning("worker loop ended without a stop request; restarting in 2 s")
            stopping.wait(2)
    finally:
        finished.set()
    log.info("worker stopped")
    return 0


async def _run_lanes(app, lanes, options: dict) -> None:
    """Run one procrastinate worker per lane on one event loop. Cancelling this (the stop signal) or one lane
    failing stops them all gracefully: running jobs finish, nothing new is taken."""
    import asyncio

    lane_tasks = [asyncio.create_task(app.run_worker_async(queues=list(ln.queues), concurrency=ln.concurrency,
                                                           **options), name=f"lane-{ln.name}") for ln in lanes]
    try:
        await asyncio.wait(lane_tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for t in lane_tasks:
            t.cancel()
        results = await asyncio.gather(*lane_tasks, return_exceptions=True)
    for ln, res in zip(lanes, results):
        if isinstance(res, Exception):
            log.error("worker lane %s stopped with an error: %r", ln.name, res)
            raise res


def _start_warmups() -> None:
    """One background thread loads the text model, then, once no slot is waiting or running, compiles
    UMAP's kernels (numba's compile holds the GIL and a CPU for seconds: slots come first). EMBEDDING_WARMUP=false
    skips both (tests that start many short-lived workers)."""
    import threading

    from core import jobs
    from core.vectors import embedding_spaces, projection
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


def cmd_backup(args: argparse.Namespace) -> int:
    """One archive: a consistent pg_dump of the workbench database plus the media folder."""
    from core import backup
    from core.settings import get_settings

    url = _prepare_database(own_embedded=True)
    info = backup.backup(target=Path(args.file), url=url, media_root=Path(get_settings().media_root))
    print(f"backup written to {info.path}: {sum(info.row_counts.values())} rows in {len(info.row_counts)} tables, "
          f"{info.media_files} media files ({info.media_bytes} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Load a backup into an empty instance (database and media folder); --force replaces a non-empty one."""
    from core import backup
    from core.errors import WorkbenchError
    from core.settings import get_settings
    from db.engine import database_url

    url = database_url(own_embedded=True)  # no migrations first: the target must be empty
    try:
        info = backup.restore(source=Path(args.file), url=url, media_root=Path(get_settings().media_root),
                              force=args.force)
    except WorkbenchError as err:
        print(f"restore refused: {err}", file=sys.stderr)
        return 2
    print(f"restored {info.path}: {sum(info.row_counts.values())} rows in {len(info.row_counts)} tables, "
          f"{info.media_files} media files")
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(prog="workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="start database, migrate, serve the app")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8501")))
    p.add_argument("--address", default=None, help="address to bind (default SERVER_ADDRESS, 127.0.0.1); a "
                   "non-loopback address needs sign-in ([auth] in secrets.toml) or ALLOW_UNAUTHENTICATED_REMOTE=true")
    p.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("worker", help="run a background job worker")
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--queues", default="", help="comma-separated queues (generation, embeddings, projections); "
                   "default: all")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("demo", help="load the demo cast")
    p.add_argument("--editor", default="demo")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("backup", help="write one archive with a database dump and the media folder")
    p.add_argument("file")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="load a backup archive into an empty instance")
    p.add_argument("file")
    p.add_argument("--force", action="store_true", help="replace a non-empty database and media folder")
    p.set_defaults(func=cmd_restore)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "streamlit":
        return run_streamlit(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
