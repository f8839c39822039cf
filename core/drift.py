"""Identity drift: how far each variation's pixels moved from what the character looks like.

The anchor is the mean pixel descriptor of the character's reference images
(or, with no references, of its approved variations); a variation's drift is
its cosine distance from that anchor in the image-local space. 0 means "looks
like the references"; the review queue sorts by it so editors look at the
likely off-model images first.
"""
from __future__ import annotations

import sqlalchemy as sa

from core.embedding_spaces import IMAGE_LOCAL, dims_of
from db.engine import session_scope

DRIFT_WARN = 0.35  # above this a variation is flagged as likely off-model in the review queue


def update(*, character_ids: list[int]) -> int:
    """Recompute drift for every embedded variation of these characters; returns how many were scored."""
    if not character_ids:
        return 0
    d = dims_of(IMAGE_LOCAL)
    with session_scope() as s:
        return s.execute(sa.text(f"""
            with ref as (
                select r.character_id as cid, avg(e.vector::vector({d})) as c
                from embedding e join reference_image r on r.id = e.subject_id
                where e.subject_type = 'reference' and e.space = :s and e.vector is not null
                  and r.character_id = any(:ids)
                group by 1),
            appr as (
                select v.character_id as cid, avg(e.vector::vector({d})) as c
                from embedding e join variation v on v.id = e.subject_id
                where e.subject_type = 'variation' and e.space = :s and e.vector is not null
                  and v.review_status = 'approved' and v.character_id = any(:ids)
                group by 1),
            anchor as (
                select coalesce(ref.cid, appr.cid) as cid, coalesce(ref.c, appr.c) as c
                from ref full join appr on appr.cid = ref.cid)
            update variation v
            set drift_score = round(cast(cosine_distance(e.vector::vector({d}), a.c) as numeric), 4)
            from embedding e, anchor a
            where e.subject_type = 'variation' and e.subject_id = v.id and e.space = :s and e.vector is not null
              and a.cid = v.character_id and v.character_id = any(:ids)
        """), {"s": IMAGE_LOCAL, "ids": list(character_ids)}).rowcount
