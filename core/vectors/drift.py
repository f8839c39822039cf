"""Identity drift: how far each variation moved from what the character looks like.

The anchor is the mean image embedding of the character's reference images
(or, with no references, of its approved variations); a variation's drift is
its cosine distance from that anchor in the visual image space (image-learned
by default: a learned model sees "same subject, other angle" as close). 0
means "looks like the references"; the review queue sorts by it and flags
variations above the off-model threshold, calibrated per space by
bench/visual.py (views of one photographed subject vs. different subjects).
"""
from __future__ import annotations

import sqlalchemy as sa

from core.vectors.embedding_spaces import IMAGE_LOCAL, dims_of, image_space
from core.vectors.image_embedders import IMAGE_CLIP, IMAGE_LEARNED
from core.settings import get_settings
from db.engine import session_scope

# The drift (distance to the mean of three reference views) that best separates other views of the same
# subject from different subjects in bench/visual.py: 16 real photographs × 6 views, balanced accuracy 0.985
# for image-learned (0.81 for image-local). image-clip has no calibration yet (no CLIP weights ship offline):
# its value is a conservative guess; set OFF_MODEL_DRIFT after running the benchmark with your model.
OFF_MODEL_DRIFT = {IMAGE_LEARNED: 0.62, IMAGE_LOCAL: 0.30, IMAGE_CLIP: 0.35}


def off_model_threshold() -> float:
    """Drift above this flags a variation off-model: OFF_MODEL_DRIFT setting, else the calibrated value."""
    override = get_settings().off_model_drift
    return override if override is not None else OFF_MODEL_DRIFT[image_space()]


def is_off_model(score: float | None) -> bool:
    return score is not None and score > off_model_threshold()


def update(*, character_ids: list[int]) -> int:
    """Recompute drift for every embedded variation of these characters; returns how many were scored."""
    if not character_ids:
        return 0
    space = image_space()
    d = dims_of(space)
    with session_scope() as s:  # one transaction: scores from another space (or a lost anchor) are not left behind
        s.execute(sa.text("update variation set drift_score = null where character_id = any(:ids) "
                          "and drift_score is not null"), {"ids": list(character_ids)})
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
        """), {"s": space, "ids": list(character_ids)}).rowcount
