"""Near-duplicate images (FiftyOne's find_duplicates, per character): pairs above a similarity threshold.

Among reference images and variations (rejected variations are already dealt
with and left out), every pair whose cosine similarity in the visual image
space is at least the threshold is listed, pairs within one generation run
first (the case reviewers care about: two slots of a run that came out as the
same picture), then by similarity. The vectors are read once in binary and
compared as a blocked matrix product, which for ten thousand images is a
fraction of a second and, unlike one index probe per image, exact.

A reviewer resolves a pair by rejecting one side (review.bulk_reject with the
"duplicate" reason) or by keeping both, which is remembered (duplicate_kept)
so the pair is not listed again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from core.vectors import subject_info
from core.vectors.embedding_spaces import IMAGE_LOCAL, image_space
from core.errors import ValidationError
from core.vectors.image_embedders import IMAGE_CLIP, IMAGE_LEARNED
from db.engine import session_scope

# Default "near-identical" similarity per space. bench/visual.py (image-learned): a half-size JPEG-q70 copy of a
# photo scores 0.94 median (0.87 worst), another view of the same subject 0.87 median; the view lets editors
# move the threshold.
DUPLICATE_SIMILARITY = {IMAGE_LEARNED: 0.90, IMAGE_LOCAL: 0.97, IMAGE_CLIP: 0.95}
BLOCK = 2048  # rows per matrix-product block: 2048 × n float32 stays small for any realistic cast
MAX_PAIRS = 5000  # candidates kept before sorting, so a threshold dragged too low cannot exhaust memory


@dataclass(frozen=True)
class Side:
    subject_type: str
    subject_id: int
    character_id: int
    name: str
    label: str  # shot label or "reference"
    thumb: str
    run: str  # "run #12" for variations, "" for references
    review: str


@dataclass(frozen=True)
class DuplicatePair:
    a: Side
    b: Side
    similarity: float

    @property
    def same_run(self) -> bool:
        return bool(self.a.run) and self.a.run == self.b.run


def default_threshold() -> float:
    return DUPLICATE_SIMILARITY[image_space()]


def _vectors(space: str, character_id: int | None) -> tuple[list[tuple[str, int]], np.ndarray]:
    from core.vectors.projection import load_vectors

    keys: list[tuple[str, int]] = []
    mats = []
    with session_scope() as s:
        allowed = {
            "reference": s.execute(sa.text("select id from reference_image where (cast(:c as int) is null or character_id = :c)"),
                                   {"c": character_id}).scalars().all(),
            "variation": s.execute(sa.text("select id from variation where status = 'completed' and "
                                           "review_status <> 'rejected' and (cast(:c as int) is null or character_id = :c)"),
                                   {"c": character_id}).scalars().all()}
    for subject_type, ids in allowed.items():
        if not ids:
            continue
        vs = load_vectors(space=space, subject_type=subject_type, ids=list(ids))
        keys += [(subject_type, int(i)) for i in vs.ids]
        if len(vs.ids):
            mats.append(vs.vectors)
    return keys, (np.vstack(mats) if mats else np.zeros((0, 0), np.float32))


def _kept() -> set[tuple[str, int, str, int]]:
    with session_scope() as s:
        return {tuple(r) for r in s.execute(sa.text("select a_type, a_id, b_type, b_id from duplicate_kept")).all()}


def _ordered(a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int, str, int]:
    lo, hi = sorted([a, b])
    return (*lo, *hi)


def find_pairs(*, threshold: float | None = None, character_id: int | None = None, limit: int = 100,
               include_kept: bool = False) -> list[DuplicatePair]:
    """Image pairs at or above `threshold` cosine similarity, same-run pairs first, then most similar first."""
    threshold = default_threshold() if threshold is None else threshold
    if not 0.0 < threshold <= 1.0:
        raise ValidationError(f"The duplicate threshold is a similarity between 0 and 1, not {threshold}.")
    if limit < 1:
        raise ValidationError("Ask for at least one pair.")
    keys, vecs = _vectors(image_space(), character_id)
    if len(keys) < 2:
        return []
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    found: list[tuple[float, int, int]] = []
    for start in range(0, len(keys), BLOCK):
        sims = vecs[start:start + BLOCK] @ vecs.T
        rows, cols = np.nonzero(sims >= threshold - 1e-6)
        upper = cols > rows + start  # each pair once, never an image with itself
        for r, c in zip(rows[upper], cols[upper]):
            found.append((float(sims[r, c]), start + int(r), int(c)))
        if len(found) > MAX_PAIRS:
            found = sorted(found, reverse=True)[:MAX_PAIRS]
    kept = set() if include_kept else _kept()
    found = [f for f in found if _ordered(keys[f[1]], keys[f[2]]) not in kept]
    info = _describe({keys[i] for _, a, b in found for i in (a, b)})
    pairs = [DuplicatePair(info[keys[a]], info[keys[b]], round(sim, 4)) for sim, a, b in found
             if keys[a] in info and keys[b] in info]
    pairs.sort(key=lambda p: (not p.same_run, -p.similarity))
    return pairs[:limit]


def _describe(keys: set[tuple[str, int]]) -> dict[tuple[str, int], Side]:
    out = {}
    for subject_type in ("reference", "variation"):
        ids = [i for t, i in keys if t == subject_type]
        for sid, i in subject_info.describe(subject_type=subject_type, ids=ids).items():
            out[(subject_type, sid)] = Side(subject_type, sid, i.character_id, i.name, i.slot, i.thumb, i.run,
                                            i.review)
    return out


IMAGE_TABLES = {"reference": "reference_image", "variation": "variation"}  # what a duplicate pair is made of


def _side(side: object) -> tuple[str, int]:
    """One image of a pair as (type, id); ValidationError for anything else."""
    try:
        subject_type, sid = side  # type: ignore[misc]
        sid = int(sid)
    except (TypeError, ValueError):
        raise ValidationError(f"An image of a pair is (type, id), not {str(side)[:40]!r}.") from None
    if subject_type not in IMAGE_TABLES or not 0 < sid < 2**31:
        raise ValidationError(f"An image of a pair is a reference or variation with an id (not {str(side)[:40]!r}).")
    return subject_type, sid


def keep_both(*, a: tuple[str, int], b: tuple[str, int], editor: str) -> None:
    """Remember that a reviewer looked at this pair and wants both: it is no longer listed."""
    from core.team.access import authorize
    from core.team.audit import record

    a, b = _side(a), _side(b)
    if a == b:
        raise ValidationError("A pair needs two different images.")
    pair = _ordered(a, b)
    with session_scope() as s:
        role = authorize(s, who=editor, action="duplicate.keep")
        for subject_type, sid in (a, b):
            if s.execute(sa.text(f"select 1 from {IMAGE_TABLES[subject_type]} where id = :i"), {"i": sid}).first() is None:
                raise ValidationError(f"There is no {subject_type} #{sid} (deleted meanwhile?); nothing was kept.")
        added = s.execute(sa.text("insert into duplicate_kept (a_type, a_id, b_type, b_id, kept_by) values "
                                  "(:at, :ai, :bt, :bi, :by) on conflict do nothing returning a_id"),
                          dict(zip(("at", "ai", "bt", "bi"), pair), by=editor)).first()
        if added is not None:  # already kept: nothing changed, nothing to record
            key = f"{pair[0]}:{pair[1]}+{pair[2]}:{pair[3]}"
            record(s, who=editor, role=role, action="duplicate.keep", entity="duplicate_pair", entity_id=key,
                   before={"kept": False}, after={"kept": True}, label=f"kept both: {pair[0]} #{pair[1]} and "
                   f"{pair[2]} #{pair[3]}")


def reject_duplicate(*, variation_id: int, of: tuple[str, int], reviewer: str) -> int:
    """Reject one variation of a pair as a near-duplicate of the other; returns 1 if it was rejected.
    A bulk rejection underneath: authorized as review.bulk, one audit row for the image."""
    from core import review

    return review.bulk_reject(variation_ids=[variation_id], reviewer=reviewer, reason_codes=["duplicate"],
                              note=f"near-duplicate of {of[0]} #{of[1]}")
