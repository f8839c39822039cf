"""Characters: validation, creation, optimistic-locked edits, archive, search.

Edits carry the `version` the editor's form was loaded with; the UPDATE only
matches that version, so a stale form is refused instead of overwriting a
colleague's save.
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import sqlalchemy as sa
from anyascii import anyascii
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.errors import ConflictError, DuplicateError, NotFoundError, ValidationError, require
from core.team.access import authorize
from core.team.audit import record, snapshot
from core.text import DESCRIPTION_MAX, SEARCH_MAX, clean_line, clean_text, escape_like
from db.engine import session_scope
from db.models import Character, Style, utcnow

NAME_MAX = 100
SLUG_MAX = 100
TEXT_MAX = DESCRIPTION_MAX
TRAIT_MAX = 60
TRAITS_MAX = 30
SEED_MAX = 2**31 - 1
# what the audit trail keeps of a character (who/when columns are the audit row's own)
AUDIT_FIELDS = ("slug", "name", "description", "traits", "style_id", "base_seed", "notes", "archived")


@dataclass
class CharacterInput:
    name: str
    description: str = ""
    traits: list[str] = field(default_factory=list)
    style_id: int | None = None
    base_seed: int | None = None
    notes: str = ""


def slugify(text: str) -> str:
    """A readable ASCII slug in any script: transliterated ('Жанна' → 'zhanna', '李小龙' → 'li-xiao-long').

    A name with letters that have no transliteration gets a stable fallback from its text
    ('character-1a2b3c4d'); a name with no letter or digit at all gives ''.
    """
    norm = unicodedata.normalize("NFKC", text)
    ascii_text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", anyascii(norm))  # 'LiXiaoLong' → 'Li Xiao Long'
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:SLUG_MAX].strip("-")
    if not slug and any(unicodedata.category(c)[0] in "LN" for c in norm):
        slug = f"character-{zlib.crc32(norm.encode()):08x}"
    return slug


def _same_name(a: str, b: str) -> bool:
    """Names that differ only in case, spacing or punctuation are the same character."""
    def key(n: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFKC", n).casefold() if c.isalnum())

    return key(a) == key(b)


def _free_slug(session, base: str, name: str) -> str:
    """`base`, or `base-2`, `base-3`... when another character (a different name) has it.

    Two names that transliterate alike ('Łukasz', 'Lukasz') both get readable, unique slugs; the same
    name twice is a duplicate and refused.
    """
    taken = {c.slug: c for c in session.exec(
        select(Character).where(sa.or_(Character.slug == base, Character.slug.like(escape_like(base) + "-%", escape="\\")))
    ).all()}
    existing = next((c for c in taken.values() if _same_name(c.name, name)), None)
    if existing is not None:
        raise DuplicateError(
            f"A character with slug '{existing.slug}' already exists ({existing.name}"
            f"{', archived' if existing.archived else ''}). Choose a different name."
        )
    for n in range(1, len(taken) + 2):
        candidate = base if n == 1 else f"{base[:SLUG_MAX - 1 - len(str(n))]}-{n}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: one of len(taken) + 1 candidates is free")


def default_seed(slug: str) -> int:
    """Deterministic per slug so the demo cast and offline renders are reproducible."""
    return zlib.crc32(slug.encode()) % 1_000_000


def parse_traits(raw: str | list[str]) -> list[str]:
    """Comma/newline separated text or a list → trimmed, de-duplicated (case-insensitive) traits."""
    items = re.split(r"[,\n]", raw) if isinstance(raw, str) else list(raw)
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        t = " ".join(str(item).split())
        if t and t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def _validate(data: CharacterInput) -> CharacterInput:
    name = clean_line(data.name, field="Name", limit=NAME_MAX)
    if not name:
        raise ValidationError("Name is required.")
    description = clean_text(data.description, field="Description", limit=TEXT_MAX, multiline=True)
    notes = clean_text(data.notes, field="Notes", limit=TEXT_MAX, multiline=True)
    traits = [clean_line(t, field=f"Trait '{t[:30]}'", limit=TRAIT_MAX) for t in parse_traits(data.traits)]
    if len(traits) > TRAITS_MAX:
        raise ValidationError(f"{len(traits)} traits given; the limit is {TRAITS_MAX}.")
    if data.base_seed is not None and not (0 <= int(data.base_seed) <= SEED_MAX):
        raise ValidationError(f"Base seed must be between 0 and {SEED_MAX}.")
    return CharacterInput(
        name=name,
        description=description,
        traits=traits,
        style_id=data.style_id,
        base_seed=None if data.base_seed is None else int(data.base_seed),
        notes=notes,
    )


def _check_style(session, style_id: int | None) -> None:
    if style_id is not None and session.get(Style, style_id) is None:
        raise ValidationError("The chosen style no longer exists; pick another.")


def create_character(*, data: CharacterInput, editor: str, slug: str | None = None) -> Character:
    """Create a character (editor role); the audit row commits with it."""
    clean = _validate(data)
    slug = slugify(slug or clean.name)
    if not slug:
        raise ValidationError("The name must contain at least one letter or digit (it becomes the slug).")
    with session_scope() as s:
        role = authorize(s, who=editor, action="character.create")
        _check_style(s, clean.style_id)
        slug = _free_slug(s, slug, clean.name)
        ch = Character(
            slug=slug,
            name=clean.name,
            description=clean.description,
            traits=clean.traits,
            style_id=clean.style_id,
            base_seed=clean.base_seed if clean.base_seed is not None else default_seed(slug),
            notes=clean.notes,
            created_by=editor,
            updated_by=editor,
        )
        s.add(ch)
        try:
            s.flush()
        except IntegrityError:
            raise DuplicateError(f"A character with slug '{slug}' was just created by someone else.") from None
        s.refresh(ch)
        record(s, who=editor, role=role, action="character.create", entity="character", entity_id=ch.id,
               before=None, after=snapshot(ch, AUDIT_FIELDS), label=ch.name)
    _request_embedding(ch.id)
    return ch


def _request_embedding(character_id: int) -> None:
    """After the commit: the embedding job sees the saved text (unchanged text costs no model call)."""
    from core import jobs

    jobs.request_embedding(subject_type="character", ids=[character_id])


def get_character(*, character_id: int) -> Character:
    with session_scope() as s:
        ch = require(s.get(Character, character_id), f"Character #{character_id} does not exist (it may have been deleted).")
        return ch


def _conflict(s, character_id: int, expected_version: int) -> Exception:
    current = s.get(Character, character_id)
    if current is None:
        return NotFoundError(f"Character #{character_id} was deleted by someone else.")
    return ConflictError(
        f"'{current.name}' was changed by {current.updated_by or 'someone'} at "
        f"{current.updated_at:%Y-%m-%d %H:%M:%S} UTC (version {current.version}, your form has version "
        f"{expected_version}). Nothing was overwritten: reload to see their changes, then apply yours again."
    )



def update_character(*, character_id: int, expected_version: int, data: CharacterInput, editor: str) -> Character:
    """Save an edit if nobody saved since the form was loaded (editor role); one audit row, before → after."""
    clean = _validate(data)
    with session_scope() as s:
        role = authorize(s, who=editor, action="character.update")
        _check_style(s, clean.style_id)
        current = s.get(Character, character_id)
        before = snapshot(current, AUDIT_FIELDS) if current is not None else None
        values = dict(
            name=clean.name,
            description=clean.description,
            traits=clean.traits,
            style_id=clean.style_id,
            notes=clean.notes,
            updated_by=editor,
            updated_at=utcnow(),
            version=Character.version + 1,
        )
        if clean.base_seed is not None:
            values["base_seed"] = clean.base_seed
        res = s.execute(
            sa.update(Character)
            .where(Character.id == character_id, Character.version == expected_version)
            .values(**values)
            .returning(Character.id)
        )
        if res.first() is None:
            raise _conflict(s, character_id, expected_version)
        s.refresh(current)  # the version check passed, so `before` was read at the version we replaced
        record(s, who=editor, role=role, action="character.update", entity="character", entity_id=character_id,
               before=before, after=snapshot(current, AUDIT_FIELDS), label=current.name)
    _request_embedding(character_id)
    return get_character(character_id=character_id)


def set_archived(*, character_id: int, expected_version: int, archived: bool, editor: str) -> Character:
    """Archive or restore (editor role); the audit row shows `archived` before → after."""
    with session_scope() as s:
        role = authorize(s, who=editor, action="character.archive")
        current = s.get(Character, character_id)
        was = current.archived if current is not None else None
        res = s.execute(
            sa.update(Character)
            .where(Character.id == character_id, Character.version == expected_version)
            .values(archived=archived, updated_by=editor, updated_at=utcnow(), version=Character.version + 1)
            .returning(Character.id)
        )
        if res.first() is None:
            raise _conflict(s, character_id, expected_version)
        record(s, who=editor, role=role, action="character.archive", entity="character", entity_id=character_id,
               before={"archived": was}, after={"archived": archived}, label=current.name)
    _request_embedding(character_id)
    return get_character(character_id=character_id)


@dataclass(frozen=True)
class CharacterRow:
    id: int
    slug: str
    name: str
    traits: list[str]
    style_id: int | None
    style_name: str | None
    archived: bool
    updated_at: object
    updated_by: str
    version: int


def list_characters(
    *, search: str = "", style_id: int | None = None, archived: bool | None = False, limit: int = 1000,
    ids: list[int] | None = None,
) -> list[CharacterRow]:
    """Search matches name, slug or any trait (case-insensitive substring).

    archived=False → active only, True → archived only, None → both.
    """
    # the listed columns, not whole ORM objects: building 1,000 entities (descriptions, notes) cost most of
    # a page's render time at studio scale
    q = (
        sa.select(Character.id, Character.slug, Character.name, Character.traits, Character.style_id,
                  Style.name.label("style_name"), Character.archived, Character.updated_at, Character.updated_by,
                  Character.version)
        .join(Style, Style.id == Character.style_id, isouter=True)
        .order_by(sa.func.lower(Character.name))
        .limit(limit)
    )
    term = (search or "").strip()[:SEARCH_MAX]
    if term:
        like = f"%{escape_like(term.lower())}%"  # '%', '_' and '\\' in a search are literal characters
        q = q.where(
            sa.or_(
                sa.func.lower(Character.name).like(like, escape="\\"),
                Character.slug.like(like, escape="\\"),
                sa.func.lower(sa.cast(Character.traits, sa.Text)).like(like, escape="\\"),
            )
        )
    if style_id is not None:
        q = q.where(Character.style_id == style_id)
    if ids is not None:
        q = q.where(Character.id.in_(ids))
    if archived is not None:
        q = q.where(Character.archived.is_(archived))
    with session_scope() as s:
        rows = s.execute(q).all()
    return [CharacterRow(**r._mapping) for r in rows]


def count_characters(*, include_archived: bool = True) -> int:
    q = sa.select(sa.func.count(Character.id))
    if not include_archived:
        q = q.where(Character.archived.is_(False))
    with session_scope() as s:
        return s.execute(q).scalar_one()
