"""The one way to store files: under MEDIA_ROOT, atomically, content-hashed.

(The package also holds what files go through before they are stored: `images` checks and
re-encodes image bytes, `urlfetch` fetches them from the web safely.)

Callers write the file first and commit the row that points at it second; if
the commit fails they call `remove` so no orphan file stays behind.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import unicodedata
from pathlib import Path, PurePosixPath

from core.errors import ValidationError
from core.settings import get_settings

log = logging.getLogger(__name__)


# Bidi overrides/isolates and marks: they make "evil\u202egnp.png" display as "evilpng.png".
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def first_control_char(text: str) -> str | None:
    """The first character that never belongs in a file name or URL (C0/C1 controls, DEL, unpaired
    surrogates, line/paragraph separators, bidi controls), or None."""
    for ch in text:
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return ch
    return None


def media_root() -> Path:
    return Path(get_settings().media_root).resolve()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve(rel_path: str) -> Path:
    """Absolute path of a stored file; refuses paths that escape MEDIA_ROOT."""
    root = media_root()
    rel = PurePosixPath(rel_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValidationError(f"Invalid media path: {rel_path!r}")
    return root.joinpath(*rel.parts)


def write_atomic(rel_path: str, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename over the target.

    The temp file is created with mode 0o666 and the kernel applies the process umask, so stored
    files get the usual group/world-readable modes (tempfile.mkstemp would make them 0600, which a
    worker running as another user on shared storage could not read)."""
    target = resolve(rel_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{secrets.token_hex(8)}{target.suffix}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def read_bytes(rel_path: str) -> bytes:
    return resolve(rel_path).read_bytes()


def exists(rel_path: str) -> bool:
    return resolve(rel_path).is_file()


def remove(*rel_paths: str) -> None:
    """Delete stored files; a missing file is fine, any other failure is logged."""
    for rel in rel_paths:
        try:
            resolve(rel).unlink(missing_ok=True)
        except OSError as err:
            log.warning("could not remove media file %s: %s", rel, err)


def character_dir(slug: str) -> str:
    return f"characters/{slug}"


def zip_with_manifest(entries: list[tuple[str, str, dict]]) -> tuple[bytes, int]:
    """(archive name, media path, manifest row) → a zip of the files that exist, plus manifest.csv and
    manifest.json describing exactly those; returns the bytes and how many files went in.
    One writer for every export (review's approved set, the map's selection)."""
    import csv
    import io
    import json
    import zipfile

    manifest = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for arcname, rel_path, row in entries:
            if not rel_path or not exists(rel_path):
                continue
            zf.writestr(arcname, read_bytes(rel_path))
            manifest.append({"file": arcname, **row})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(manifest[0]) if manifest else ["file"])
        writer.writeheader()
        writer.writerows(manifest)
        zf.writestr("manifest.csv", out.getvalue())
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
    return buf.getvalue(), len(manifest)
