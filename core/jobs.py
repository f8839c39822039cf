"""The job queue: procrastinate on the workbench's own Postgres.

The web process only defers jobs (sync connector); workers (`workbench.py
worker`, started by `make run`, or on other machines against the same
DATABASE_URL) execute them. Tasks are registered by importing
core.generation_tasks.
"""
from __future__ import annotations

import logging
import threading
from urllib.parse import urlparse

import procrastinate

from db.engine import database_url

log = logging.getLogger(__name__)
_lock = threading.Lock()
_app: procrastinate.App | None = None
GENERATION_QUEUE = "generation"


def libpq_url(sqlalchemy_url: str) -> str:
    parsed = urlparse(sqlalchemy_url)
    return parsed._replace(scheme="postgresql").geturl()


def get_app() -> procrastinate.App:
    """One App per process, opened for synchronous defers on first use."""
    global _app
    with _lock:
        if _app is None:
            app = procrastinate.App(
                connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url())),
                import_paths=["core.generation_tasks"],
            )
            _app = app
        return _app


def reset_app() -> None:
    """Tests switch databases; close the connector so the next use reconnects."""
    global _app
    with _lock:
        if _app is not None:
            try:
                _app.connector.get_sync_connector().close()
            except RuntimeError as err:  # never opened
                log.debug("closing unopened procrastinate connector: %s", err)
        _app = None
