"""One engine per process; short-lived sessions.

The URL comes from DATABASE_URL (the launcher sets it for its children). When a
process starts without it, the embedded server is started and left running.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import Session

from core.settings import get_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: sa.Engine | None = None
WORKBENCH_DB = "workbench"


def normalize_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+psycopg:// alike."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_url(*, own_embedded: bool = False) -> str:
    """URL of the workbench database; `own_embedded` stops the embedded server when this process exits."""
    settings = get_settings()
    if settings.database_url is not None:
        return normalize_url(settings.database_url.get_secret_value())
    from db import embedded

    server = embedded.start(settings.pg_data_dir, stop_on_exit=own_embedded)
    server_url = embedded.sqlalchemy_url(server.get_uri())
    return embedded.ensure_database(server_url, WORKBENCH_DB)


def get_engine() -> sa.Engine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = sa.create_engine(database_url(), pool_pre_ping=True, pool_size=5, max_overflow=10)
        return _engine


def dispose_engine() -> None:
    """Tests switch databases; workers fork. Both need a fresh pool."""
    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
