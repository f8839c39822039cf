"""Reviewing variations: coverage grid, decisions with reason codes (and undo), queue, export.

Built for a studio cast (1,000 characters × 10 slots): the grid is read a page at a time, and filters,
queue order, counts and the export's fingerprint are computed in SQL, never by loading the cast.

The "latest attempt" of a slot is the variation with the highest id for that
(character, slot); earlier attempts stay for side-by-side comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from core import media
from core.errors import ValidationError
from core.shots import shot_list
from core.review_decisions import (  # noqa: F401 (decisions are part of the review service's API)
    NOTE_MAX, Decision, adjudicate, bulk_approve, bulk_reject, decide, get_variation, image_label, review, undo,
)
from core.review_votes import votes_required  # noqa: F401
from db.engine import session_scope
from db.models import RUN_ACTIVE, Character, GenerationRun, ReferenceImage, Style, Variation



@dataclass(frozen=True)
class Cell:
    variation_id: int
    run_id: int
    slot_key: str
    attempt: int
    status: str
    review_status: str
    thumb_path: str | None
    path: str | None
    error: str | None
    drift_score: float | None


@dataclass(frozen=True)
class CoverageRow:
    character_id: int
    name: str
    slug: str
    style_name: str | None
    cells: dict[str, Cell]


REVIEW_STATES = ("unreviewed", "approved", "rejected", "disputed")  # disputed: double review disagreed
PAGE_SIZE = 25
SEARCH_MAX = 100


@dataclass(frozen=True)
class ReviewFilter:
    """What the editor narrowed the review to; every query below applies it in SQL."""

    search: str = ""
    style_id: int | None = None
    review_state: str | None = None
    run_id: int | None = None

    def __post_init__(self) -> None:
        if self.review_state is not None and self.review_state not in REVIEW_STATES:
            raise ValidationError(f"Unknown review state '{self.review_state}'; use one of {', '.join(REVIEW_STATES)}.")
        for name in ("style_id", "run_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 < value < 2**31):
                raise ValidationError(f"The {name.replace('_', ' ')} filter must be a row id (got {str(value)[:40]!r}).")
        if not isinstance(self.search, str):
            raise ValidationError("The name filter must be text.")
        if len(self.search) > SEARCH_MAX:
            raise ValidationError(f"The name filter is {len(self.search)} characters; the limit is {SEARCH_MAX}.")
        if "\x00" in self.search:  # Postgres cannot compare text holding a NUL byte: say so, don't crash
            raise ValidationError("The name filter contains a NUL byte; remove it and try again.")


@dataclass(frozen=True)
class CoveragePage:
    rows: list[CoverageRow]
    total_characters: int
    page: int
    pages: int


_NARROW = ("id", "run_id", "character_id", "slot_key", "attempt", "status", "review_status", "drift_score")


def _latest_subquery(run_id: int | None = None, character_ids: list[int] | None = None, *, wide: bool = False):
    """Each (character, slot)'s latest attempt. Narrow by default: sorting 10,000 whole rows (prompts
    included) to keep a handful of columns was most of a Review rerun's database time."""
    cols = [Variation] if wide else [getattr(Variation, c) for c in _NARROW]
    q = sa.select(*cols).distinct(Variation.character_id, Variation.slot_key).order_by(
        Variation.character_id, Variation.slot_key, Variation.id.desc())
    if run_id is not None:
        q = q.where(Variation.run_id == run_id)
    if character_ids is not None:
        q = q.where(Variation.character_id.in_(character_ids))
    return q.subquery()


def _matching_characters(f: ReviewFilter):
    """Characters shown for `f`: not archived, with a latest attempt (in the run, if one is picked) and, with a
    review-state filter, a completed latest attempt in that state."""
    latest = _latest_subquery(f.run_id)
    has_cell = sa.select(sa.literal(1)).where(latest.c.character_id == Character.id)
    if f.review_state:
        has_cell = has_cell.where(latest.c.status == "completed", latest.c.review_status == f.review_state)
    q = sa.select(Character.id, Character.name).where(Character.archived.is_(False), has_cell.exists())
    if f.style_id is not None:
        q = q.where(Character.style_id == f.style_id)
    if f.search.strip():
        pattern = f.search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(sa.func.lower(Character.name).like(f"%{pattern}%", escape="\\"))
    return q


def _grid_order(name_col, id_col):
    return (sa.func.lower(name_col), id_col)


def _cells(character_ids: list[int], run_id: int | None) -> dict[int, dict[str, Cell]]:
    latest = _latest_subquery(run_id, character_ids, wide=True)
    with session_scope() as s:
        rows = s.execute(sa.select(latest)).all()
    out: dict[int, dict[str, Cell]] = {cid: {} for cid in character_ids}
    for r in rows:
        m = r._mapping
        out[m["character_id"]][m["slot_key"]] = Cell(m["id"], m["run_id"], m["slot_key"], m["attempt"], m["status"],
                                                     m["review_status"], m["thumb_path"], m["path"], m["error"],
                                                     m["drift_score"])
    return out


def coverage_page(*, filters: ReviewFilter, page: int = 1, page_size: int = PAGE_SIZE) -> CoveragePage:
    """One page of the coverage grid: the count and the page's characters are chosen in SQL, then only those
    characters' latest attempts are read (a studio cast of 10,000 images never leaves the database at once)."""
    if page_size < 1:
        raise ValidationError(f"A page holds at least one character (got {page_size}).")
    chars = _matching_characters(filters).subquery()
    with session_scope() as s:
        total = s.execute(sa.select(sa.func.count()).select_from(chars)).scalar_one()
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        head = s.execute(
            sa.select(Character.id, Character.name, Character.slug, Style.name)
            .join(chars, chars.c.id == Character.id).join(Style, Style.id == Character.style_id, isouter=True)
            .order_by(*_grid_order(Character.name, Character.id))
            .offset((page - 1) * page_size).limit(page_size)).all()
    cells = _cells([h[0] for h in head], filters.run_id)
    rows = [CoverageRow(cid, name, slug, style_name, cells[cid]) for cid, name, slug, style_name in head]
    return CoveragePage(rows, total, page, pages)


def coverage(*, style_id: int | None = None, review_state: str | None = None, run_id: int | None = None,
             search: str = "") -> list[CoverageRow]:
    """The whole grid for small casts and scripts; pages use coverage_page."""
    f = ReviewFilter(search=search, style_id=style_id, review_state=review_state, run_id=run_id)
    return coverage_page(filters=f, page=1, page_size=10**9).rows


def review_counts(*, filters: ReviewFilter) -> dict[str, int]:
    """Latest attempts of the shown characters by state, in one aggregate query: completed ones by review
    state ('unreviewed' is the queue length), the others by status ('pending', 'generating', 'failed', ...)."""
    chars = _matching_characters(filters).subquery()
    latest = _latest_subquery(filters.run_id)
    state = sa.case((latest.c.status == "completed", latest.c.review_status), else_=latest.c.status)
    with session_scope() as s:
        rows = s.execute(sa.select(state, sa.func.count()).join(chars, chars.c.id == latest.c.character_id)
                         .group_by(state)).all()
    return {k: n for k, n in rows}


def matching_character_ids(*, filters: ReviewFilter) -> list[int]:
    with session_scope() as s:
        return list(s.execute(sa.select(_matching_characters(filters).subquery().c.id)).scalars())


def attempts(*, character_id: int, slot_key: str) -> list[Variation]:
    with session_scope() as s:
        return list(s.execute(sa.select(Variation).where(Variation.character_id == character_id,
                                                         Variation.slot_key == slot_key)
                              .order_by(Variation.id.desc())).scalars())


QUEUE_ORDERS = {"grid": "Grid order (character, then shot)", "drift": "Most identity drift first"}


@dataclass(frozen=True)
class QueueItem:
    variation_id: int
    character_id: int
    character_name: str
    slot_key: str
    attempt: int
    drift_score: float | None

    @property
    def label(self) -> str:
        return image_label(character_name=self.character_name, slot_key=self.slot_key, attempt=self.attempt)


def _slot_rank(col):
    return sa.func.array_position(sa.literal([s.key for s in shot_list()], sa.ARRAY(sa.Text)), col)


def _queue_query(filters: ReviewFilter, order: str, off_model_only: bool):
    """Latest completed, unreviewed attempts of the shown characters, in queue order."""
    if order not in QUEUE_ORDERS:
        raise ValidationError(f"Unknown queue order '{order}'.")
    chars = _matching_characters(filters).subquery()
    latest = _latest_subquery(filters.run_id)
    grid_order = (*_grid_order(chars.c.name, chars.c.id), _slot_rank(latest.c.slot_key))
    sort = grid_order if order == "grid" else (latest.c.drift_score.desc().nulls_last(), *grid_order)
    q = (sa.select(latest.c.id, chars.c.id, chars.c.name, latest.c.slot_key, latest.c.attempt, latest.c.drift_score)
         .join(chars, chars.c.id == latest.c.character_id)
         .where(latest.c.status == "completed", latest.c.review_status == "unreviewed").order_by(*sort))
    if off_model_only:
        from core.vectors.drift import off_model_threshold

        q = q.where(latest.c.drift_score > off_model_threshold())
    return q


def queue_slice(*, filters: ReviewFilter, order: str = "grid", offset: int = 0, limit: int | None = None,
                off_model_only: bool = False) -> list[QueueItem]:
    """The review queue, ordered and sliced in SQL. Grid order walks characters then the shot list; drift
    order puts the likely off-model images first (not yet scored ones last). `off_model_only` keeps those
    whose drift is above the calibrated off-model threshold."""
    q = _queue_query(filters, order, off_model_only).offset(max(0, offset)).limit(limit)
    with session_scope() as s:
        return [QueueItem(*r) for r in s.execute(q).all()]


def queue_size(*, filters: ReviewFilter, off_model_only: bool = False) -> int:
    """How many images the queue holds, counted in SQL (the page shows "n of N" without loading them)."""
    q = _queue_query(filters, "grid", off_model_only).order_by(None).subquery()
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count()).select_from(q)).scalar_one()


def unreviewed_in_order(grid: list[CoverageRow]) -> list[int]:
    """Latest completed, unreviewed attempts among rows already on screen, in grid order."""
    return [row.cells[slot.key].variation_id for row in grid for slot in shot_list()
            if slot.key in row.cells and row.cells[slot.key].status == "completed"
            and row.cells[slot.key].review_status == "unreviewed"]


def drift_label(score: float | None) -> str:
    from core.vectors.drift import is_off_model

    if score is None:
        return "identity drift: not scored yet (needs the image embedding and a reference)"
    return f"identity drift {score:.3f}" + (" ⚠️ off-model" if is_off_model(score) else "")


def queue(*, style_id: int | None = None, run_id: int | None = None) -> list[int]:
    """The whole queue's ids in grid order (scripts and tests; the page reads one slice at a time)."""
    return [i.variation_id for i in queue_slice(filters=ReviewFilter(style_id=style_id, run_id=run_id))]


def avatar_paths(character_ids: list[int]) -> dict[int, str]:
    """Approved portrait_front thumbnail, else the first reference's thumbnail."""
    if not character_ids:
        return {}
    # one array parameter, not IN (...) with a bind per id: the map asks for 10,000 characters at once
    wanted = sa.any_(sa.cast(sa.literal(list(character_ids)), sa.ARRAY(sa.Integer)))
    with session_scope() as s:
        approved = s.execute(
            sa.select(Variation.character_id, Variation.thumb_path)
            .where(Variation.character_id == wanted, Variation.slot_key == "portrait_front",
                   Variation.review_status == "approved")
            .order_by(Variation.character_id, Variation.id.desc()).distinct(Variation.character_id)).all()
        refs = s.execute(
            sa.select(ReferenceImage.character_id, ReferenceImage.thumb_path)
            .where(ReferenceImage.character_id == wanted)
            .order_by(ReferenceImage.character_id, ReferenceImage.position, ReferenceImage.id)
            .distinct(ReferenceImage.character_id)).all()
    out = {cid: p for cid, p in refs}
    out.update({cid: p for cid, p in approved if p})
    return out


def generation_summary(character_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per character: counts of latest attempts by status and review state."""
    if not character_ids:
        return {}
    latest = _latest_subquery()
    with session_scope() as s:
        rows = s.execute(sa.select(latest.c.character_id, latest.c.status, latest.c.review_status, sa.func.count())
                         .where(latest.c.character_id.in_(character_ids))
                         .group_by(latest.c.character_id, latest.c.status, latest.c.review_status)).all()
        active = set(s.execute(sa.select(GenerationRun.character_id).where(
            GenerationRun.character_id.in_(character_ids), GenerationRun.status.in_(RUN_ACTIVE))).scalars())
    out: dict[int, dict[str, int]] = {}
    for cid, status, review_state, n in rows:
        d = out.setdefault(cid, {})
        d[status] = d.get(status, 0) + n
        if status == "completed":
            d[review_state] = d.get(review_state, 0) + n
    for cid in active:
        out.setdefault(cid, {})["active_run"] = 1
    return out


def _latest_approved():
    return (sa.select(Variation).where(Variation.review_status == "approved")
            .distinct(Variation.character_id, Variation.slot_key)
            .order_by(Variation.character_id, Variation.slot_key, Variation.id.desc()).subquery())


def approved_fingerprint(*, filters: ReviewFilter) -> str:
    """Changes whenever the set an export of `filters` would contain changes: a prepared download carries
    it, and the page drops the download when it no longer matches."""
    la, chars = _latest_approved(), _matching_characters(filters).subquery()
    ids = sa.func.string_agg(sa.cast(la.c.id, sa.Text), aggregate_order_by(sa.literal(","), la.c.id))
    with session_scope() as s:
        return s.execute(sa.select(sa.func.md5(sa.func.coalesce(ids, "")))
                         .join(chars, chars.c.id == la.c.character_id)).scalar_one()


def export_approved(*, character_ids: list[int] | None = None, filters: ReviewFilter | None = None
                    ) -> tuple[bytes, int]:
    """A zip of approved images (latest approved attempt per slot) with manifest.csv and manifest.json,
    for the given characters or for those the review filters show."""
    latest_approved = _latest_approved()
    q = (sa.select(Character.slug, Character.name, latest_approved)
         .join(latest_approved, latest_approved.c.character_id == Character.id).order_by(Character.slug))
    if character_ids:
        q = q.where(Character.id.in_(character_ids))
    if filters is not None:
        q = q.where(Character.id.in_(_matching_characters(filters).with_only_columns(Character.id)))
    with session_scope() as s:
        rows = [r._mapping for r in s.execute(q).all()]
    return media.zip_with_manifest([
        (f"{m['slug']}/{m['slot_key']}.{(m['path'] or '').rsplit('.', 1)[-1]}", m["path"], {
            "character": m["name"], "slug": m["slug"], "slot": m["slot_key"], "run_id": m["run_id"],
            "attempt": m["attempt"], "seed": m["seed"], "provider": m["provider"], "model": m["model"],
            "template_version": m["template_version"], "template_layer": m["template_layer"],
            "cost_usd": str(m["cost_usd"] if m["cost_usd"] is not None else Decimal(0)),
            "reviewed_by": m["reviewed_by"], "reviewed_at": m["reviewed_at"].isoformat() if m["reviewed_at"] else None,
            "prompt": m["rendered_prompt"],
        }) for m in rows])


@dataclass(frozen=True)
class Disputed:
    """An image double review could not settle, with the reviewers' votes (shown only to the adjudicator)."""

    item: QueueItem
    votes: list[tuple[str, str, tuple[str, ...], str]]  # reviewer, decision, reason codes, note


def disputed(*, limit: int = 50) -> list[Disputed]:
    """The Adjudicate queue: disputed latest attempts, oldest dispute first, each with its reviewer votes."""
    from db.models_team import ReviewVote

    latest = _latest_subquery()
    with session_scope() as s:
        rows = s.execute(
            sa.select(Variation.id, Character.id, Character.name, Variation.slot_key, Variation.attempt,
                      Variation.drift_score).join(Character, Character.id == Variation.character_id)
            .join(latest, latest.c.id == Variation.id)
            .where(Variation.review_status == "disputed", Character.archived.is_(False))
            .order_by(Variation.reviewed_at, Variation.id).limit(limit)).all()
        ids = [r[0] for r in rows]
        vote_rows = s.execute(sa.select(ReviewVote).where(ReviewVote.variation_id.in_(ids),
                                                          ReviewVote.adjudication.is_(False))
                              .order_by(ReviewVote.decided_at, ReviewVote.id)).scalars().all() if ids else []
    by_id: dict[int, list] = {}
    for x in vote_rows:
        by_id.setdefault(x.variation_id, []).append((x.reviewer, x.decision, tuple(x.reason_codes), x.note))
    return [Disputed(QueueItem(*r), by_id.get(r[0], [])) for r in rows]


from core.review_claims import CLAIM_BATCH, available, claim_next, held_by, release  # noqa: E402,F401
