"""Backup and restore: one archive with a consistent database dump and the media folder.

`backup` opens a REPEATABLE READ transaction, exports its snapshot and runs
`pg_dump --snapshot` on it, so the dump and the row counts in the manifest
describe the same instant even while workers write. The media folder is
copied after the dump: files added meanwhile are extras that recovery sweeps
away as orphans; run it with the workers stopped to be exact.
`restore` loads an archive into an empty database and media folder (or, with
force, replaces what is there), then applies any newer migrations.

Binaries: pgserver's bundled PostgreSQL 16 (pg_dump / pg_restore), else the
ones on PATH; PostgreSQL 16's pg_dump reads servers from 9.2 on.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from core.errors import ValidationError, WorkbenchError

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = 1
DUMP_NAME = "database.dump"
MANIFEST_NAME = "manifest.json"
MEDIA_PREFIX = "media"


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    row_counts: dict[str, int]
    media_files: int
    media_bytes: int


def _tool(name: str) -> str:
    from db.embedded import bin_dir

    bundled = bin_dir() / name
    if bundled.is_file():
        return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise WorkbenchError(f"{name} was not found (neither pgserver's bundled binaries nor PATH).")
    return found


def _libpq(url: str) -> str:
    from core.jobs import libpq_url

    return libpq_url(url)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WorkbenchError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _user_tables(conn) -> list[str]:
    return list(conn.execute(sa.text(
        "select tablename from pg_tables where schemaname = 'public' order by tablename")).scalars())


def row_counts(conn) -> dict[str, int]:
    return {t: conn.execute(sa.text(f'select count(*) from "{t}"')).scalar_one() for t in _user_tables(conn)}


def _media_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def backup(*, target: Path, url: str, media_root: Path) -> ArchiveInfo:
    """Write `target` (a .tar.gz): database.dump (pg_dump custom format), media/…, manifest.json."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, isolation_level="REPEATABLE READ")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as tmp:
        dump = Path(tmp) / DUMP_NAME
        try:
            with engine.connect() as conn:  # holds the snapshot until pg_dump has read it
                snapshot = conn.execute(sa.text("select pg_export_snapshot()")).scalar_one()
                counts = row_counts(conn)
                revision = conn.execute(sa.text("select version_num from alembic_version")).scalar()
                _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                      f"--file={dump}", f"--dbname={_libpq(url)}"], "pg_dump")
                conn.rollback()
        finally:
            engine.dispose()
        files = _media_files(media_root)
        manifest = {
            "format": ARCHIVE_FORMAT, "created_at": datetime.now(timezone.utc).isoformat(), "alembic_revision": revision,
            "row_counts": counts, "media_files": len(files), "media_bytes": sum(p.stat().st_size for p in files),
        }
        (Path(tmp) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        partial = Path(tmp) / "archive.tar.gz"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(Path(tmp) / MANIFEST_NAME, arcname=MANIFEST_NAME)
            tar.add(dump, arcname=DUMP_NAME)
            for p in files:
                tar.add(p, arcname=f"{MEDIA_PREFIX}/{p.relative_to(media_root).as_posix()}")
        os.replace(partial, target)
    log.info("backup written to %s: %d tables, %d media files", target, len(counts), len(files))
    return ArchiveInfo(target, counts, manifest["media_files"], manifest["media_bytes"])


def _read_manifest(tar: tarfile.TarFile, source: Path) -> dict:
    try:
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())
    except (KeyError, AttributeError, json.JSONDecodeError) as err:
        raise ValidationError(f"{source} is not a workbench backup (no readable {MANIFEST_NAME}): {err}") from None
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise ValidationError(f"{source} has backup format {manifest.get('format')!r}; this version reads "
                              f"format {ARCHIVE_FORMAT}.")
    return manifest


def restore(*, source: Path, url: str, media_root: Path, force: bool = False) -> ArchiveInfo:
    """Load an archive into an empty database + media folder; a non-empty one is refused unless `force`."""
    source, media_root = Path(source).resolve(), Path(media_root).resolve()
    if not source.is_file():
        raise ValidationError(f"No backup file at {source}.")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            tables = _user_tables(conn)
        existing = _media_files(media_root)
        if (tables or existing) and not force:
            raise ValidationError(
                f"The target is not empty ({len(tables)} tables in the database, {len(existing)} files in "
                f"{media_root}); restore only into an empty instance, or pass --force to replace everything.")
        with tarfile.open(source, "r:*") as tar, tempfile.TemporaryDirectory(prefix=".restore-",
                                                                              dir=media_root.parent) as tmp:
            manifest = _read_manifest(tar, source)
            tar.extractall(tmp, filter="data")  # refuses absolute paths, '..', links out of the folder
            if force:
                with engine.connect() as conn:
                    conn.execute(sa.text("drop schema public cascade"))
                    conn.execute(sa.text("create schema public"))
            _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                  f"--dbname={_libpq(url)}", str(Path(tmp) / DUMP_NAME)], "pg_restore")
            staged = Path(tmp) / MEDIA_PREFIX
            staged.mkdir(exist_ok=True)
            if media_root.exists():
                shutil.rmtree(media_root)
            shutil.move(str(staged), str(media_root))
        from db.migrate import upgrade

        upgrade(url)  # an archive from an older version gets the newer migrations
        with engine.connect() as conn:
            counts = row_counts(conn)
    finally:
        engine.dispose()
    expected = manifest["row_counts"]
    mismatched = {t: (n, counts.get(t)) for t, n in expected.items() if counts.get(t) != n}
    if mismatched:
        raise WorkbenchError(f"Restored row counts differ from the backup's manifest: {mismatched}")
    files = _media_files(media_root)
    log.info("restored %s: %d tables, %d media files", source, len(counts), len(files))
    return ArchiveInfo(source, counts, len(files), sum(p.stat().st_size for p in files))
