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

import io
import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from PIL import Image as PILImage

from core.media import images
from core.vectors import embeddings
from core.vectors.embedding_spaces import dims_of, get_embedder, image_space, text_space
from core.errors import ValidationError
from core.ai.prompt_text import clip_words
from core.settings import get_settings
from core.text import SEARCH_MAX
from db.engine import session_scope

log = logging.getLogger(__name__)

DEFAULT_EF_SEARCH = 400  # recall@10 ≈ 0.95–0.96 at 300 on 100k (bench/search.py) was too close to the 0.95 target
MAX_EF_SEARCH = 1000  # pgvector's ceiling
EXACT_BELOW = 2000  # scanning this many matching rows exactly is cheaper than a wide index scan
REVIEW_STATES = ("unreviewed", "approved", "rejected", "disputed")


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


def _of_characters(cond: str) -> str:
    """`e` belongs to a character matching `cond` (over alias c). IN-subqueries become hashed subplans,
    so the filter costs one hash probe per row, even in the count over the whole space."""
    return ("((e.subject_type = 'character' and e.subject_id in (select c.id from character c where {0})) or "
            "(e.subject_type = 'reference' and e.subject_id in (select r.id from reference_image r "
            "join character c on c.id = r.character_id where {0})) or "
            "(e.subject_type = 'variation' and e.subject_id in (select v.id from variation v "
            "join character c on c.id = v.character_id where {0})))").format(cond)


def _where(flt: SearchFilter, exclude: tuple[str, int] | None) -> tuple[str, dict]:
    """The filter as SQL over `embedding e` (only columns of the (space, type, id) index, plus subqueries)."""
    parts = ["e.space = :s", "e.subject_type = any(:types)"]
    params: dict = {}
    if not flt.include_archived:
        parts.append("not " + _of_characters("c.archived"))
    if flt.style_ids:
        parts.append(_of_characters("c.style_id = any(:styles)"))
        params["styles"] = list(flt.style_ids)
    if flt.tag_ids:
        parts.append("(e.subject_type, e.subject_id) in (select st.subject_type, st.subject_id from subject_tag st "
                     "where st.tag_id = any(:tags))")
        params["tags"] = list(flt.tag_ids)
    if flt.review_states:
        bad = set(flt.review_states) - set(REVIEW_STATES)
        if bad:
            raise ValidationError(f"Unknown review state {sorted(bad)}; use {', '.join(REVIEW_STATES)}.")
        parts.append("e.subject_type = 'variation' and e.subject_id in (select v.id from variation v "
                     "where v.review_status = any(:review))")
        params["review"] = list(flt.review_states)
    if exclude:
        parts.append("not (e.subject_type = :xt and e.subject_id = :xi)")
        params.update(xt=exclude[0], xi=exclude[1])
    return " and ".join(parts), params


_COUNTS_TTL_S = 10.0
_counts: dict[str, tuple[float, dict[str, int]]] = {}


def _type_counts(s, space: str, *, fresh: bool = False) -> dict[str, int]:
    """Rows per subject type in a space, cached for a few seconds: they only steer ef_search and the choice
    of exact search (a stale count can cost speed, never results: short answers fall back to exact)."""
    now = time.monotonic()
    hit = _counts.get(space)
    if hit is None or fresh or now - hit[0] > _COUNTS_TTL_S:
        rows = s.execute(sa.text("select subject_type, count(*) from embedding where space = :s group by 1"),
                         {"s": space}).all()
        hit = _counts[space] = (now, dict(rows))
    return hit[1]


def nearest_sql(dims: int, where: str, *, exact: bool) -> str:
    """The k-NN query. `<=>` on `vector::vector(dims)` matches the space's partial HNSW index; the exact
    form uses cosine_distance(), which no index can serve, so it always scans the filtered rows."""
    dist = (f"cosine_distance(e.vector::vector({dims}), cast(:q as vector({dims})))" if exact
            else f"(e.vector::vector({dims})) <=> cast(:q as vector({dims}))")
    return (f"select e.subject_type, e.subject_id, 1 - ({dist}) as sim from embedding e "
            f"where {where} and e.vector is not null order by {dist} limit :k")


def nearest(*, vector: str, space: str, subject_types: Sequence[str], k: int, flt: SearchFilter = SearchFilter(),
            exclude: tuple[str, int] | None = None, ef_search: int | None = None) -> SearchResult:
    """k nearest stored subjects of the given types to a vector literal ('[x,y,…]'), k guaranteed."""
    dims = dims_of(space)
    where, params = _where(flt, exclude)
    params.update(q=vector, s=space, types=list(subject_types), k=k)
    with session_scope() as s:
        counts = _type_counts(s, space)
        total = sum(counts.values())
        if flt.empty:
            matching = sum(counts.get(t, 0) for t in subject_types)
        else:  # an index-only scan of the (space, subject_type, subject_id) btree plus hashed subplans
            matching = s.execute(sa.text(f"select count(*) from embedding e where {where}"), params).scalar_one()
        if matching == 0:
            counts = _type_counts(s, space, fresh=True)  # the cached counts may predate the first embeddings
            matching = sum(counts.get(t, 0) for t in subject_types) if flt.empty else 0
            total = sum(counts.values())
        if matching == 0:
            return SearchResult([], "none", 0)
        selectivity = matching / max(total, 1)
        # the scan must see about ef_search *matching* rows: widen it by 1/selectivity, up to pgvector's cap
        ef = min(MAX_EF_SEARCH, max(k, math.ceil((ef_search or DEFAULT_EF_SEARCH) / selectivity)))
        exact = matching <= EXACT_BELOW
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
    """Free text → the nearest characters or images. In a text space images match through their captions and
    prompts; in image-clip (text and images in one space) they match by what their pixels show."""
    space = space or text_space()
    if not query.strip():
        raise ValidationError("Type something to search for.")
    if len(query.strip()) > SEARCH_MAX:
        raise ValidationError(f"The search is {len(query.strip())} characters; the limit is {SEARCH_MAX}.")
    emb = get_embedder(space)
    if emb.kind == "image" and not getattr(emb, "accepts_text", False):
        raise ValidationError(f"The {space} space has no text side: describe → images needs image-clip.")
    qv = (emb.embed_texts if emb.kind == "image" else emb.embed)([query.strip()])[0]
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
    """Nearest neighbours of a stored subject (itself excluded). Images compare what they show (the image
    space, image-learned by default), characters their meaning."""
    if space is None:
        space = image_space() if subject_type in embeddings.IMAGE_TYPES else text_space()
    targets = subject_types or (embeddings.IMAGE_TYPES if subject_type in embeddings.IMAGE_TYPES else (subject_type,))
    return nearest(vector=_own_vector(subject_type, subject_id, space), space=space, subject_types=targets, k=k,
                   flt=flt, exclude=(subject_type, subject_id))


def search_image(*, data: bytes, k: int = 10, flt: SearchFilter = SearchFilter(),
                 filename: str = "upload") -> SearchResult:
    """An uploaded image → the most similar stored images in the image space (nothing is stored)."""
    settings = get_settings()
    images.inspect_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
                         filename=filename)
    space = image_space()
    with PILImage.open(io.BytesIO(data)) as img:
        vec = get_embedder(space).embed_images([img])[0]
    return nearest(vector=embeddings.vec_literal(vec), space=space, subject_types=embeddings.IMAGE_TYPES, k=k,
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
    from core import tags
    from core.vectors import subject_info

    by_type: dict[str, list[int]] = {}
    for h in hits:
        by_type.setdefault(h.subject_type, []).append(h.subject_id)
    info = {t: subject_info.describe(subject_type=t, ids=ids) for t, ids in by_type.items()}
    tag_map = {t: tags.tags_for(subject_type=t, subject_ids=ids) for t, ids in by_type.items()}
    cards = []
    for h in hits:
        i = info[h.subject_type].get(h.subject_id)
        if i is None:
            continue
        subtitle = {"character": i.style,
                    "reference": f"reference · {clip_words(i.caption, 40)}" if i.caption else "reference",
                    "variation": f"{i.slot} · {i.review}"}[h.subject_type]
        cards.append(HitCard(h.subject_type, h.subject_id, h.similarity, i.name, subtitle, i.thumb or None,
                             i.character_id, tuple(tag_map[h.subject_type].get(h.subject_id, []))))
    return cards


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
