"""Embedded Postgres (pgserver: PostgreSQL 16 + pgvector) for laptops and tests.

Used only when DATABASE_URL is unset. The launcher starts it once and hands the
socket URL to its children through DATABASE_URL, so the app and the workers
never race to start it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone (or never ours to see): not a holder any more
        return False


def _drop_stale_handles(pgdata: Path) -> list[int]:
    """Forget handle PIDs of processes that no longer exist.

    pgserver stops the server when the last process holding a handle exits, and keeps the holders in
    `.handle_pids.json`. A launcher killed with -9 never removes its PID, so every later launcher saw
    "another holder" and left Postgres running on exit. Pruned under pgserver's own inter-process lock.
    """
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids = handles.get()
        stale = [pid for pid in pids if not _alive(pid)]
        if stale:
            handles.put([pid for pid in pids if pid not in stale])
    if stale:
        log.warning("embedded postgres in %s: dropped handles of dead processes %s", pgdata, stale)
    return stale


def start(pgdata: Path, *, stop_on_exit: bool):
    """Start (or attach to) the embedded server in `pgdata` and return its handle."""
    import pgserver  # heavy import, only when embedded is used

    pgdata = Path(pgdata).resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.is_dir():
        _drop_stale_handles(pgdata)
    log.info("starting embedded postgres in %s", pgdata)
    return pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)


def bin_dir() -> Path:
    """pgserver's bundled PostgreSQL 16 binaries (pg_dump, pg_restore, pg_ctl…)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def sqlalchemy_url(pgserver_uri: str, *, database: str = "postgres") -> str:
    """Turn pgserver's libpq URI (unix socket in ?host=) into a psycopg 3 SQLAlchemy URL."""
    parsed = urlparse(pgserver_uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    if host:
        return f"postgresql+psycopg://{parsed.username or 'postgres'}@/{database}?host={host}"
    return f"postgresql+psycopg://{parsed.username or 'postgres'}@{parsed.hostname}:{parsed.port}/{database}"


def ensure_database(server_url: str, database: str, *, recreate: bool = False) -> str:
    """Create `database` on the server behind `server_url` (a URL to any db on it); return its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("select 1 from pg_database where datname = :d"), {"d": database}).first()
            if exists and recreate:
                conn.execute(sa.text(f'drop database "{database}" with (force)'))
                exists = None
            if not exists:
                conn.execute(sa.text(f'create database "{database}"'))
    finally:
        admin.dispose()
    parsed = urlparse(server_url)
    return parsed._replace(path=f"/{database}").geturl()
