"""Similarity search on pgvector: text → subjects, subject → similar, image → similar images.

pgvector 0.6.2 applies WHERE clauses after the HNSW scan, so a filtered query
can come back with fewer than k rows. Every search here is in effect filtered
(a space holds characters, images and tags together), so the plan is chosen
from the filter's selectivity: a wide enough candidate list (`hnsw.ef_search`
scaled by 1/selectivity) when the filter is broad, exact search (a scan of the
matching rows, no index) when it is narrow, and exact search again if the
index still returned fewer than k. Callers always get k results when k exist.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa

from core import embeddings, images
from core.embedding_spaces import IMAGE_LOCAL, dims_of, get_embedder, text_space
from core.errors import ValidationError
from core.settings import get_settings
from core.visual_descriptor import describe_bytes
from db.engine import session_scope

log = logging.getLogger(__name__)

DEFAULT_EF_SEARCH = 300  # recall@10 ≈ 0.96 on 100k (bench/search.py); 100 gave 0.82
MAX_EF_SEARCH = 1000  # pgvector's ceiling
EF_HEADROOM = 3.0  # candidates per expected match
EXACT_BELOW = 2000  # scanning this many matching rows exactly is cheaper than a wide index scan
REVIEW_STATES = ("unreviewed", "approved", "rejected")


@dataclass(frozen=True)
class SearchFilter:
    style_ids: tuple[int, ...] = ()
    tag_ids: tuple[int, ...] = ()
    review_states: tuple[str, ...] = ()
    include_archived: bool = False

    @property
    def empty(self) -> bool:
        return not (self.style_ids or self.tag_ids or self.review_states)


@dataclass(frozen=True)
class Hit:
    subject_type: str
    subject_id: int
    similarity: float


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    strategy: str  # "hnsw ef=…" | "exact"
    candidates: int


_CHARACTER_OF = ("(case e.subject_type when 'character' then e.subject_id "
                 "when 'reference' then (select r.character_id from reference_image r where r.id = e.subject_id) "
                 "when 'variation' then (select v.character_id from variation v where v.id = e.subject_id) end)")


def _where(flt: SearchFilter, exclude: tuple[str, int] | None) -> tuple[str, dict]:
    parts = ["e.space = :s", "e.subject_type = any(:types)", "e.vector is not null"]
    params: dict = {}
    if not flt.include_archived:
        parts.append(f"not exists (select 1 from character c where c.id = {_CHARACTER_OF} and c.archived)")
    if flt.style_ids:
        parts.append(f"exists (select 1 from character c where c.id = {_CHARACTER_OF} and c.style_id = any(:styles))")
        params["styles"] = list(flt.style_ids)
    if flt.tag_ids:
        parts.append("exists (select 1 from subject_tag st where st.subject_type = e.subject_type "
                     "and st.subject_id = e.subject_id and st.tag_id = any(:tags))")
        params["tags"] = list(flt.tag_ids)
    if flt.review_states:
        bad = set(flt.review_states) - set(REVIEW_STATES)
        if bad:
            raise ValidationError(f"Unknown review state {sorted(bad)}; use {', '.join(REVIEW_STATES)}.")
        parts.append("e.subject_type = 'variation' and exists (select 1 from variation v where v.id = e.subject_id "
                     "and v.review_status = any(:review))")
        params["review"] = list(flt.review_states)
    if exclude:
        parts.append("not (e.subject_type = :xt and e.subject_id = :xi)")
        params.update(xt=exclude[0], xi=exclude[1])
    return " and ".join(parts), params


def nearest_sql(dims: int, where: str, *, exact: bool) -> str:
    """The k-NN query. `<=>` on `vector::vector(dims)` matches the space's partial HNSW index; the exact
    form uses cosine_distance(), which no index can serve, so it always scans the filtered rows."""
    dist = (f"cosine_distance(e.vector::vector({dims}), cast(:q as vector({dims})))" if exact
            else f"(e.vector::vector({dims})) <=> cast(:q as vector({dims}))")
    return (f"select e.subject_type, e.subject_id, 1 - ({dist}) as sim from embedding e where {where} "
            f"order by {dist} limit :k")


def nearest(*, vector: str, space: str, subject_types: Sequence[str], k: int, flt: SearchFilter = SearchFilter(),
            exclude: tuple[str, int] | None = None, ef_search: int | None = None) -> SearchResult:
    """k nearest stored subjects of the given types to a vector literal ('[x,y,…]'), k guaranteed."""
    dims = dims_of(space)
    where, params = _where(flt, exclude)
    params.update(q=vector, s=space, types=list(subject_types), k=k)
    with session_scope() as s:
        total, matching = s.execute(sa.text(
            f"select count(*), count(*) filter (where {where}) from embedding e where e.space = :s"), params).one()
        if matching == 0:
            return SearchResult([], "none", 0)
        selectivity = matching / max(total, 1)
        ef = max(ef_search or DEFAULT_EF_SEARCH, math.ceil(k * EF_HEADROOM / selectivity))
        exact = matching <= EXACT_BELOW or ef > MAX_EF_SEARCH
        if not exact:
            s.execute(sa.text(f"set local hnsw.ef_search = {int(ef)}"))
            rows = s.execute(sa.text(nearest_sql(dims, where, exact=False)), params).all()
            if len(rows) < min(k, matching):
                log.info("HNSW returned %d of %d (ef=%d, selectivity %.3f): exact fallback", len(rows), k, ef,
                         selectivity)
                exact = True
        if exact:
            rows = s.execute(sa.text(nearest_sql(dims, where, exact=True)), params).all()
    hits = [Hit(t, sid, float(sim)) for t, sid, sim in rows]
    return SearchResult(hits, "exact" if exact else f"hnsw ef={ef}", matching)


def search_text(*, query: str, subject_types: Sequence[str] = ("character",), k: int = 10,
                flt: SearchFilter = SearchFilter(), space: str | None = None) -> SearchResult:
    """Free text → the nearest characters or images (images match through their captions/prompts)."""
    space = space or text_space()
    if not query.strip():
        raise ValidationError("Type something to search for.")
    qv = get_embedder(space).embed([query.strip()])[0]
    return nearest(vector=embeddings.vec_literal(qv), space=space, subject_types=subject_types, k=k, flt=flt)


def _own_vector(subject_type: str, subject_id: int, space: str) -> str:
    with session_scope() as s:
        own = s.execute(sa.text("select vector::text from embedding where subject_type=:t and subject_id=:i "
                                "and space=:s and vector is not null"),
                        {"t": subject_type, "i": subject_id, "s": space}).scalar()
    if own is None:
        raise ValidationError("This item has no embedding yet: embed it on the Embeddings page first.")
    return own


def similar_to(*, subject_type: str, subject_id: int, k: int = 10, flt: SearchFilter = SearchFilter(),
               subject_types: Sequence[str] | None = None, space: str | None = None) -> SearchResult:
    """Nearest neighbours of a stored subject (itself excluded). Images compare pixels, characters meaning."""
    if space is None:
        space = IMAGE_LOCAL if subject_type in embeddings.IMAGE_TYPES else text_space()
    targets = subject_types or (embeddings.IMAGE_TYPES if subject_type in embeddings.IMAGE_TYPES else (subject_type,))
    return nearest(vector=_own_vector(subject_type, subject_id, space), space=space, subject_types=targets, k=k,
                   flt=flt, exclude=(subject_type, subject_id))


def search_image(*, data: bytes, k: int = 10, flt: SearchFilter = SearchFilter(),
                 filename: str = "upload") -> SearchResult:
    """An uploaded image → the most similar stored images, by the pixel descriptor (nothing is stored)."""
    settings = get_settings()
    images.inspect_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                         filename=filename)
    vec = describe_bytes(data)
    return nearest(vector=embeddings.vec_literal(vec), space=IMAGE_LOCAL, subject_types=embeddings.IMAGE_TYPES, k=k,
                   flt=flt)


@dataclass(frozen=True)
class HitCard:
    """What a result card shows: resolved once in core so pages stay thin."""
    subject_type: str
    subject_id: int
    similarity: float
    title: str
    subtitle: str
    thumb_path: str | None
    character_id: int | None
    tags: tuple[str, ...]


def hit_cards(hits: list[Hit]) -> list[HitCard]:
    """Titles, thumbnails and tags for a result list (subjects deleted since they were embedded are dropped)."""
    from core import review, tags

    by_type: dict[str, list[int]] = {}
    for h in hits:
        by_type.setdefault(h.subject_type, []).append(h.subject_id)
    info: dict[tuple[str, int], tuple[str, str, str | None, int | None]] = {}
    with session_scope() as s:
        if by_type.get("character"):
            rows = s.execute(sa.text(
                "select c.id, c.name, coalesce(st.name, 'no style') from character c "
                "left join style st on st.id = c.style_id where c.id = any(:ids)"), {"ids": by_type["character"]}).all()
            avatars = review.avatar_paths([r[0] for r in rows])
            info.update({("character", cid): (name, style, avatars.get(cid), cid) for cid, name, style in rows})
        if by_type.get("reference"):
            rows = s.execute(sa.text(
                "select r.id, c.name, r.caption, r.thumb_path, c.id from reference_image r "
                "join character c on c.id = r.character_id where r.id = any(:ids)"), {"ids": by_type["reference"]}).all()
            info.update({("reference", rid): (name, f"reference · {cap[:40]}" if cap else "reference", thumb, cid)
                         for rid, name, cap, thumb, cid in rows})
        if by_type.get("variation"):
            from core import shots

            labels = {x.key: x.label for x in shots.shot_list()}
            rows = s.execute(sa.text(
                "select v.id, c.name, v.slot_key, v.review_status, v.thumb_path, c.id from variation v "
                "join character c on c.id = v.character_id where v.id = any(:ids)"), {"ids": by_type["variation"]}).all()
            info.update({("variation", vid): (name, f"{labels.get(slot, slot)} · {state}", thumb, cid)
                         for vid, name, slot, state, thumb, cid in rows})
    tag_map = {t: tags.tags_for(subject_type=t, subject_ids=ids) for t, ids in by_type.items()}
    return [HitCard(h.subject_type, h.subject_id, h.similarity, *info[(h.subject_type, h.subject_id)][:3],
                    info[(h.subject_type, h.subject_id)][3], tuple(tag_map[h.subject_type].get(h.subject_id, [])))
            for h in hits if (h.subject_type, h.subject_id) in info]


DISTINCT_THRESHOLD = 0.8  # MiniLM cosine; the demo cast's closest pair is 0.66, a renamed copy scores ~0.86


@dataclass(frozen=True)
class LookAlike:
    character_id: int
    name: str
    similarity: float


def look_alike(*, character_id: int, threshold: float = DISTINCT_THRESHOLD) -> LookAlike | None:
    """The existing character this one is very close to, if any: the distinctness warning on save.

    Embeds the saved text right away (the job queued by the save then finds nothing to do), so the
    check sees exactly what was saved."""
    space = text_space()
    embeddings.embed_subjects(subject_type="character", ids=[character_id], spaces=[space])
    hits = similar_to(subject_type="character", subject_id=character_id, k=1, space=space).hits
    if not hits or hits[0].similarity < threshold:
        return None
    with session_scope() as s:
        name = s.execute(sa.text("select name from character where id = :i"), {"i": hits[0].subject_id}).scalar()
    return LookAlike(hits[0].subject_id, name or "?", hits[0].similarity)
