"""Shared by the bench scripts: a throwaway database on the embedded server (never the app's)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A script in bench/ has bench/ first on sys.path, and bench/pages.py would then shadow the app's pages/
# folder (`from pages._common import …` inside a page rendered by AppTest): the project root replaces it.
# Bench helpers are imported as `bench._fill`.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (_BENCH, ROOT)]


def bench_database(name: str) -> str:
    """Start/attach the embedded bench server, recreate database `name`, migrate, point the app at it."""
    from core.logging_setup import configure_logging

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    configure_logging()
    from db import embedded

    if os.environ.get("BENCH_DATABASE_URL"):
        server_url = os.environ["BENCH_DATABASE_URL"]
    else:
        server = embedded.start(ROOT / "data" / "pg-bench", stop_on_exit=True)
        globals()["_server"] = server
        server_url = embedded.sqlalchemy_url(server.get_uri())
    url = embedded.ensure_database(server_url, name, recreate=True)
    os.environ["DATABASE_URL"] = url
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix=f"{name}-media-")
    os.environ.pop("OPENAI_API_KEY", None)
    from core.settings import reset_settings_cache
    from db.engine import dispose_engine
    from db.migrate import upgrade

    reset_settings_cache()
    dispose_engine()
    upgrade(url)
    return url
