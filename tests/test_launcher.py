"""`workbench.py serve` as a real process tree on its own embedded Postgres in a temp folder."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.browser import _free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _serve(folder: Path, port: int, log_name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PG_DATA_DIR=str(folder / "pg"), MEDIA_ROOT=str(folder / "media"), EMBEDDING_WARMUP="false",
               EMBEDDED_WORKER="true", STALLED_AFTER_S="5")
    ARTIFACTS.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "workbench.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=(ARTIFACTS / log_name).open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail("the workbench did not come up")


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_serve_killed_with_9_then_restarted_stops_postgres_and_leaves_no_children():
    folder = Path(tempfile.mkdtemp(prefix="wb-serve-"))
    pgdata = (folder / "pg").resolve()
    first = second = None
    try:
        port = _free_port()
        first = _serve(folder, port, "serve-first.log")
        _wait_healthy(first, port)
        children = psutil.Process(first.pid).children()
        assert len(children) == 2  # streamlit and the embedded worker
        first.kill()  # kill -9: no cleanup runs in the launcher
        first.wait()
        gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, f"children outlived the launcher: {alive}"  # parent-death signal
        assert _postgres_processes(pgdata)  # Postgres itself survives its owner's kill -9 ...

        port = _free_port()
        second = _serve(folder, port, "serve-second.log")
        _wait_healthy(second, port)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=90) == 0
        # ... and the next clean stop takes it down, despite the dead launcher's handle left in pgdata
        deadline = time.monotonic() + 30
        while _postgres_processes(pgdata) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _postgres_processes(pgdata)
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for leftover in _postgres_processes(pgdata):
            leftover.kill()
        shutil.rmtree(folder, ignore_errors=True)
