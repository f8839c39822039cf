"""Embedding status per subject type and space (missing / queued / stale / failed / current) for the
Embeddings page and scripts: read-only, split from core/vectors/embeddings.py (which does the embedding)."""
from __future__ import annotations

import sqlalchemy as sa

from core.vectors.embedding_spaces import get_embedder, text_space
from core.vectors.embeddings import STATUS_ORDER, SUBJECT_TYPES, Subject, content_hash, contents, spaces_for, subjects
from db.engine import session_scope

def status_rows(*, subject_type: str, space: str) -> list[dict]:
    """One row per subject: missing / queued / stale (content changed since) / failed / current."""
    return _status_rows(subject_type, space, subjects(subject_type=subject_type))


def _status_rows(subject_type: str, space: str, subs: list[Subject]) -> list[dict]:
    emb_model = get_embedder(space).model_id
    items = contents(subs, space)
    with session_scope() as s:
        rows = {r.subject_id: r for r in s.execute(sa.text(
            "select subject_id, status, content_hash, model_id, dims, error, updated_at, "
            "vector is not null as has_vector from embedding where subject_type=:t and space=:s"),
            {"t": subject_type, "s": space}).all()}
    out = []
    for sub in subs:
        if sub.id not in items:
            continue
        r = rows.get(sub.id)
        if r is None:
            status = "missing"
        elif r.status in ("failed", "queued"):
            status = r.status
        elif r.content_hash != content_hash(space, emb_model, items[sub.id]):
            status = "stale"
        else:
            status = "current"
        out.append({"subject_type": subject_type, "subject_id": sub.id, "name": sub.label, "space": space,
                    "status": status, "model": r.model_id if r else None, "dims": r.dims if r else None,
                    "has_vector": bool(r.has_vector) if r else False, "updated_at": r.updated_at if r else None,
                    "error": r.error if r else None})
    return out


def character_status(*, space: str | None = None) -> list[dict]:
    return status_rows(subject_type="character", space=space or text_space())


def status_all() -> dict[tuple[str, str], list[dict]]:
    """Status rows of every (subject type, space) set; each type's subjects are read once for all its spaces."""
    out = {}
    for subject_type in SUBJECT_TYPES:
        subs = subjects(subject_type=subject_type)
        for space in spaces_for(subject_type):
            out[(subject_type, space)] = _status_rows(subject_type, space, subs)
    return out


def status_overview(all_rows: dict[tuple[str, str], list[dict]] | None = None) -> list[dict]:
    """Counts per (subject type, space) for the summary table."""
    return [{"subject_type": subject_type, "space": space, "total": len(rows),
             **{st: sum(r["status"] == st for r in rows) for st in STATUS_ORDER}}
            for (subject_type, space), rows in (all_rows or status_all()).items()]
