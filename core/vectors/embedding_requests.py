"""Embedding work a person asks for on the Embeddings page: embed missing, re-embed stale, retry failed, or
one backfill of everything. Role-checked and audited here, apart from core/vectors/embeddings.py, which does
the embedding itself (in workers, on behalf of requests already authorized).
"""
from __future__ import annotations

from core.errors import ValidationError
from core.vectors.embeddings import SUBJECT_LABELS, SUBJECT_TYPES, mark_queued, spaces_for
from db.engine import session_scope


def request_embed(*, subject_type: str, ids: list[int], spaces: list[str] | None, editor: str,
                  what: str = "embed") -> int:
    """Queue embedding of chosen subjects (embed missing, re-embed stale, retry failed): editor role.

    The 'queued' marks and one audit row naming the ids commit together; the job that picks them up is
    deferred after the commit (if the queue is unreachable the marks stay and the next backfill takes them).
    Returns how many subjects were queued."""
    from core import jobs
    from core.team.access import authorize
    from core.team.audit import record

    if subject_type not in SUBJECT_TYPES + ("tag",):
        raise ValidationError(f"Unknown subject type '{subject_type}'.")
    ids = sorted(set(int(i) for i in ids))
    with session_scope() as s:
        role = authorize(s, who=editor, action="embedding.run")
        if not ids:
            return 0
        chosen = list(spaces or spaces_for(subject_type))
        mark_queued(subject_type=subject_type, ids=ids, spaces=chosen, session=s)
        record(s, who=editor, role=role, action="embedding.run", entity="embedding", entity_id=subject_type,
               label=f"{what}: {len(ids)} {SUBJECT_LABELS.get(subject_type, subject_type).lower()}",
               after={"request": what, "subject_type": subject_type, "spaces": chosen, "ids": ids})
    jobs.defer_embed_pending()
    return len(ids)


def request_backfill(*, editor: str) -> bool:
    """Queue one backfill of everything missing, stale or failed (editor role); False when one already
    waits (then nothing is written). The job and its audit row commit together."""
    from procrastinate.exceptions import AlreadyEnqueued

    from core import jobs
    from core.team.access import authorize
    from core.team.audit import record

    try:
        with session_scope() as s:
            role = authorize(s, who=editor, action="embedding.run")
            job_id = jobs.defer_embed_backfill(connection=s.connection().connection.driver_connection)
            record(s, who=editor, role=role, action="embedding.run", entity="embedding", entity_id="all",
                   label="backfill: everything missing, stale or failed", after={"request": "backfill",
                                                                                   "job_id": job_id})
    except AlreadyEnqueued:
        return False
    return True
