"""The Audit page's data, shaped without Streamlit: filters from form values, one page of rows, readable changes.

Filtering and paging happen in SQL (core.team.audit.events / count): the trail grows with every click,
so the page never loads more than one page of rows. Values are shown as short text (long prompt bodies
are cut, the full value stays available), and each row says where its entity can be opened.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from core.errors import PermissionDenied, ValidationError
from core.review_votes import seal_trail
from core.text import clean_line
from core.team import audit
from core.team.audit import AuditFilter
from db.models_team import AuditEvent

PAGE_SIZE = 50
PAGE_SIZE_MAX = 1_000
VALUE_MAX = 120  # characters of a before/after value shown inline; the rest is behind "full values"
EMPTY = "∅"  # no value (before a create, after a delete)
BLANK = "(empty)"  # an empty text or list, shown so it is not mistaken for a rendering gap

# entity -> (page file, query parameter that opens the entity there; None = the page only)
ENTITY_PAGES: dict[str, tuple[str, str | None]] = {
    "character": ("pages/characters.py", "character"),
    "style": ("pages/styles.py", None),
    "tag": ("pages/embeddings.py", None),
    "prompt": ("pages/prompts.py", None),
    "panel": ("pages/experiments.py", None),
    "experiment": ("pages/experiments.py", None),
    "member": ("pages/members.py", None),
    "variation": ("pages/review.py", None),
}


@dataclass(frozen=True)
class Link:
    page: str
    query_params: dict[str, str]
    label: str


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str
    before_full: str
    after_full: str

    @property
    def truncated(self) -> bool:
        return self.before != self.before_full or self.after != self.after_full


@dataclass(frozen=True)
class Row:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    entity: str
    entity_id: str
    label: str
    link: Link | None
    changes: list[FieldChange]

    @property
    def what(self) -> str:
        """The action in words ('editing a character'), from the permission table."""
        from core.team.access import ACTIONS

        return ACTIONS.get(self.action, ("", self.action))[1]

    @property
    def when(self) -> str:
        return f"{self.at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"

    @property
    def entity_text(self) -> str:
        ref = f"{self.entity} #{self.entity_id}" if self.entity_id else self.entity
        return f"{ref} · {self.label}" if self.label else ref


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int
    page: int  # 1-based
    pages: int
    page_size: int

    @property
    def first(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


FILTER_TEXT_MAX = 500  # an actor, entity, action or entity id longer than this matches nothing anyway


def _day(value: object, what: str) -> date | None:
    """A form's date (a datetime counts as its day); ValidationError for anything else."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise ValidationError(f"The {what} date must be a date (got {str(value)[:40]!r}).")


def _text(value: object, field: str) -> str | None:
    return clean_line(str(value), field=field, limit=FILTER_TEXT_MAX) or None if value not in (None, "") else None


def make_filter(*, actor: str | None = None, entity: str | None = None, action: str | None = None,
                since: date | None = None, until: date | None = None, entity_id: str | None = None) -> AuditFilter:
    """Form values → AuditFilter. Dates are whole UTC days, both ends included (the last day the calendar
    has means no end). Text that Postgres cannot compare (a NUL byte) or over-long is a ValidationError."""
    since, until = _day(since, "start"), _day(until, "end")
    if since and until and until < since:
        raise ValidationError(f"The end date {until:%Y-%m-%d} is before the start date {since:%Y-%m-%d}.")
    return AuditFilter(
        actor=_text(actor, "Person"), entity=_text(entity, "Entity"), action=_text(action, "Action"),
        entity_id=_text(entity_id, "Entity id"),
        since=datetime.combine(since, time.min, tzinfo=timezone.utc) if since else None,
        until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=timezone.utc)
        if until and until < date.max else None)


def short(value: Any, limit: int = VALUE_MAX) -> tuple[str, str]:
    """(shown, full) text of one stored value: None as ∅, text as is, lists and dicts as compact JSON."""
    if value is None:
        full = EMPTY
    elif value in ("", [], {}):
        full = BLANK
    elif isinstance(value, str):
        full = value
    else:
        full = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    flat = " ".join(full.split())
    shown = flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
    return shown, full


def field_changes(changes: dict[str, Any]) -> list[FieldChange]:
    out = []
    for name in sorted(changes):
        pair = changes[name]
        before, after = (pair + [None, None])[:2] if isinstance(pair, list) else (None, pair)
        (b, bf), (a, af) = short(before), short(after)
        out.append(FieldChange(name, b, a, bf, af))
    return out


def link_for(event: AuditEvent) -> Link | None:
    """Where the entity can be opened. Characters open directly (?character=id); rows about a character's
    references, runs or variations open that character when the change names its character_id."""
    changes = event.changes or {}
    if event.entity == "character" and event.entity_id.isdigit():
        return Link("pages/characters.py", {"character": event.entity_id}, "Open character")
    character_id = changes.get("character_id")
    if isinstance(character_id, list):
        character_id = next((c for c in reversed(character_id) if c is not None), None)
    if character_id is not None and str(character_id).isdigit():
        return Link("pages/characters.py", {"character": str(character_id)}, "Open character")
    if event.entity in ENTITY_PAGES and event.action not in ("style.delete", "tag.delete"):
        page, _ = ENTITY_PAGES[event.entity]
        return Link(page, {}, f"Open {event.entity}s" if event.entity != "prompt" else "Open prompts")
    return None


def to_row(event: AuditEvent, changes: dict[str, Any] | None = None) -> Row:
    return Row(event.id, event.at, event.actor, event.role, event.action, event.entity, event.entity_id,
               event.label, link_for(event), field_changes(changes if changes is not None else event.changes or {}))


def page_of(*, who: str, filters: AuditFilter, page: int = 1, page_size: int = PAGE_SIZE) -> Page:
    """One page of the trail, newest first; a page past the end shows the last one. The whole trail is for
    editors and up (it names everyone's actions); checked here, so a script meets the same refusal."""
    from core.team.access import refusal

    refused = refusal(who=who, action="audit.view")
    if refused:
        raise PermissionDenied(refused)
    try:
        page, page_size = int(page), int(page_size)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(f"Page {str(page)[:20]!r} of size {str(page_size)[:20]!r} is not a page number.") from None
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise ValidationError(f"A page holds 1 to {PAGE_SIZE_MAX} rows (asked for {page_size}).")
    total = audit.count(filters=filters)
    pages = max(1, math.ceil(total / page_size))
    page = min(max(1, page), pages)
    events = audit.events(filters=filters, limit=page_size, offset=(page - 1) * page_size)
    sealed = seal_trail(events, entity_of=lambda e: (e.entity, e.entity_id), changes_of=lambda e: e.changes)
    return Page([to_row(e, sealed.get(i)) for i, e in enumerate(events)], total, page, pages, page_size)


@dataclass(frozen=True)
class Choices:
    actors: list[str]
    entities: list[str]
    actions: list[str]


def choices() -> Choices:
    """What the filter boxes offer: the people and entities present in the trail (index skip scans, a few ms at
    100k rows) and every action of the ACTIONS table (writes are authorized, and recorded, under these names;
    a DISTINCT over the unindexed action column would read the whole trail on every page view)."""
    from core.team.access import ACTIONS

    return Choices(audit.actors(), audit.entities(), sorted(ACTIONS))
