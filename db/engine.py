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


def database_unavailable(err: BaseException) -> bool:
    """True when `err` (or what caused it) means the database cannot be reached right now:
    a refused or dropped connection, a server shutting down, an exhausted connection pool."""
    import psycopg
    import psycopg_pool

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (sa.exc.OperationalError, sa.exc.InterfaceError, psycopg.OperationalError,
                            psycopg.InterfaceError, psycopg_pool.PoolTimeout)):
            return True
        if isinstance(cur, sa.exc.DBAPIError) and cur.connection_invalidated:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def ping() -> bool:
    """Can we run a query right now? (the pages' "database unavailable, retrying" state polls this)"""
    try:
        with get_engine().connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except sa.exc.SQLAlchemyError as err:
        log.info("database ping failed: %s", err)
        return False
