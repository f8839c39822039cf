"""After any input, hostile or not, the rows and the files under MEDIA_ROOT match one to one.

`assert_media_matches_rows()` reads every path the database points at (reference images and
their thumbnails, variations, projection models, "try it" images in ai_call.output, run
metadata.json files) and every file on disk, and fails on a row without its file, a file
without its row, or a temp file the atomic writer left behind.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from core import media
from db.engine import get_engine

_ROW_PATHS = """
    select path from reference_image union all select thumb_path from reference_image
    union all select path from variation where path is not null
    union all select thumb_path from variation where thumb_path is not null
    union all select model_path from projection where model_path is not null
    union all select output->>'path' from ai_call where output ? 'path'
"""


def media_files() -> set[str]:
    root = media.media_root()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def row_paths() -> list[str]:
    with get_engine().connect() as conn:
        return list(conn.execute(sa.text(_ROW_PATHS)).scalars())


def assert_media_matches_rows() -> None:
    rows = row_paths()
    assert len(rows) == len(set(rows)), f"two rows share a file: {sorted(p for p in rows if rows.count(p) > 1)}"
    with get_engine().connect() as conn:
        runs = set(conn.execute(sa.text(
            "select concat('characters/', c.slug, '/variations/', r.id, '/metadata.json') "
            "from generation_run r join character c on c.id = r.character_id")).scalars())
    files = media_files()
    temps = sorted(f for f in files if Path(f).name.startswith(".tmp-"))
    assert not temps, f"temp files left behind: {temps}"
    missing = sorted(set(rows) - files)
    orphans = sorted(files - set(rows) - runs)
    assert not missing, f"rows without their file: {missing}"
    assert not orphans, f"files without their row: {orphans}"
