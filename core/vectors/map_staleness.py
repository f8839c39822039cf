"""Is a map still true to its embeddings? Points compared with the current vectors by content hash: new,
changed and gone subjects, and how much of the map was placed later rather than fitted.

Apart from core/vectors/projection.py (fitting, placing, requesting maps): the Map page asks this on every
rerun, a fit never does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from db.engine import session_scope

STALE_TRANSFORM_SHARE = 0.2  # above this share of points placed by transform, a refit is suggested


@dataclass
class Staleness:
    n_points: int = 0
    n_fit: int = 0
    n_transform: int = 0
    new_ids: list[int] = field(default_factory=list)  # current embeddings not on the map
    changed_ids: list[int] = field(default_factory=list)  # on the map, embedding changed since
    gone_ids: list[int] = field(default_factory=list)  # on the map, embedding gone (or no longer current)

    @property
    def transform_share(self) -> float:
        return self.n_transform / self.n_points if self.n_points else 0.0

    @property
    def needs_placement(self) -> bool:
        return bool(self.new_ids or self.changed_ids or self.gone_ids)

    @property
    def is_stale(self) -> bool:
        return self.needs_placement or self.transform_share >= STALE_TRANSFORM_SHARE

    def summary(self) -> str:
        parts = []
        if self.new_ids:
            parts.append(f"{len(self.new_ids)} new embedding(s) not on the map")
        if self.changed_ids:
            parts.append(f"{len(self.changed_ids)} embedding(s) changed since the map was made")
        if self.gone_ids:
            parts.append(f"{len(self.gone_ids)} point(s) whose embedding is gone")
        if self.n_transform:
            parts.append(f"{self.transform_share:.0%} of the points were placed by transform, not fitted")
        return "; ".join(parts)


def staleness(*, projection_id: int) -> Staleness:
    """Compare a map's points with the current embeddings of its set (content hashes)."""
    from core.vectors.projection import get_projection  # projection re-exports this module: import late

    p = get_projection(projection_id=projection_id)
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select coalesce(pp.subject_id, e.subject_id) as sid, pp.placed_by, pp.content_hash as point_hash,
                   e.content_hash as emb_hash, e.subject_id is not null as has_emb, pp.subject_id is not null as on_map
            from (select * from projection_point where projection_id = :p) pp
            full outer join (select subject_id, content_hash from embedding where space = :s and subject_type = :t
                             and status = 'current' and vector is not null) e on e.subject_id = pp.subject_id
        """), {"p": projection_id, "s": p.space, "t": p.subject_type}).all()
    out = Staleness()
    for r in rows:
        if r.on_map:
            out.n_points += 1
            if r.placed_by == "transform":
                out.n_transform += 1
            else:
                out.n_fit += 1
            if not r.has_emb:
                out.gone_ids.append(r.sid)
            elif r.point_hash != r.emb_hash:
                out.changed_ids.append(r.sid)
        else:
            out.new_ids.append(r.sid)
    for lst in (out.new_ids, out.changed_ids, out.gone_ids):
        lst.sort()
    return out
