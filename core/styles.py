"""Styles: a named look (description, prompt fragment, palette) shared by characters.

Edits carry the `version` the editor's form was loaded with (as characters do): a stale
form is refused with a message naming who saved first, and nothing is overwritten.
Styles are shared vocabulary: every write needs the admin role (core/team/access.py) and
leaves one audit row with the changed fields, in the write's own transaction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.errors import ConflictError, DuplicateError, NotFoundError, ValidationError, require
from core.team.access import authorize
from core.team.audit import record, snapshot
from core.text import DESCRIPTION_MAX, clean_line, clean_text
from db.engine import session_scope
from db.models import Character, Style, utcnow

NAME_MAX = 80
FRAGMENT_MAX = 1_000
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
AUDIT_FIELDS = ("name", "description", "prompt_fragment", "palette")


@dataclass
class StyleInput:
    name: str
    description: str = ""
    prompt_fragment: str = ""
    palette: list[str] = field(default_factory=list)


def _validate(data: StyleInput) -> StyleInput:
    name = clean_line(data.name, field="Style name", limit=NAME_MAX)
    if not name:
        raise ValidationError("Style name is required.")
    palette = [p.strip() for p in data.palette if p.strip()]
    for colour in palette:
        if not _HEX.match(colour):
            raise ValidationError(f"Palette colour '{colour}' is not a #rrggbb hex colour.")
    if len(palette) > 16:
        raise ValidationError(f"{len(palette)} palette colours given; the limit is 16.")
    return StyleInput(name, clean_text(data.description, field="Description", limit=DESCRIPTION_MAX, multiline=True),
                      clean_text(data.prompt_fragment, field="Prompt fragment", limit=FRAGMENT_MAX, multiline=True),
                      palette)


def list_styles() -> list[Style]:
    with session_scope() as s:
        return list(s.exec(select(Style).order_by(sa.func.lower(Style.name))).all())


def _ensure_unique(s, name: str, exclude_id: int | None = None) -> None:
    q = select(Style).where(sa.func.lower(Style.name) == name.lower())
    if exclude_id is not None:
        q = q.where(Style.id != exclude_id)
    if s.exec(q).first():
        raise DuplicateError(f"A style named '{name}' already exists.")


def create_style(*, data: StyleInput, editor: str) -> Style:
    """Needs style.create (admin); one audit row with the new style's fields."""
    clean = _validate(data)
    with session_scope() as s:
        role = authorize(s, who=editor, action="style.create")
        _ensure_unique(s, clean.name)
        style = Style(**clean.__dict__, created_by=editor, updated_by=editor)
        s.add(style)
        try:
            s.flush()
        except IntegrityError:  # the same name saved by someone else a moment ago
            raise DuplicateError(f"A style named '{clean.name}' was just created by someone else.") from None
        record(s, who=editor, role=role, action="style.create", entity="style", entity_id=style.id,
               after=snapshot(style, AUDIT_FIELDS), label=style.name)
        s.refresh(style)
        return style


def update_style(*, style_id: int, expected_version: int, data: StyleInput, editor: str) -> Style:
    """Only the version the form was loaded with is updated; otherwise ConflictError names who saved first.

    A renamed style changes the text of every character that uses it (the style name is part of what
    is embedded): their re-embedding is queued after the commit, as saving a character does."""
    clean = _validate(data)
    with session_scope() as s:
        role = authorize(s, who=editor, action="style.update")
        current = require(s.get(Style, style_id), f"Style #{style_id} does not exist (it may have been deleted).")
        before = snapshot(current, AUDIT_FIELDS)
        renamed = current.name != clean.name
        _ensure_unique(s, clean.name, exclude_id=style_id)
        try:
            updated = s.execute(
                sa.update(Style).where(Style.id == style_id, Style.version == expected_version)
                .values(**clean.__dict__, updated_by=editor, updated_at=utcnow(), version=Style.version + 1)
                .returning(Style.id)
            ).first()
        except IntegrityError:
            raise DuplicateError(f"A style named '{clean.name}' was just saved by someone else.") from None
        if updated is None:
            s.expire_all()
            current = s.get(Style, style_id)
            if current is None:
                raise NotFoundError(f"Style #{style_id} was deleted by someone else.")
            raise ConflictError(
                f"Style '{current.name}' was changed by {current.updated_by or 'someone'} at "
                f"{current.updated_at:%Y-%m-%d %H:%M:%S} UTC (version {current.version}, your form has version "
                f"{expected_version}). Nothing was overwritten: reload to see their changes, then apply yours again."
            )
        s.expire_all()
        saved = s.get(Style, style_id)
        record(s, who=editor, role=role, action="style.update", entity="style", entity_id=style_id,
               before=before, after=snapshot(saved, AUDIT_FIELDS), label=saved.name)
        users = list(s.execute(sa.select(Character.id).where(Character.style_id == style_id)).scalars()) \
            if renamed else []
    if users:
        from core import jobs

        jobs.request_embedding(subject_type="character", ids=users)
    return get_style(style_id=style_id)


def get_style(*, style_id: int) -> Style:
    with session_scope() as s:
        return require(s.get(Style, style_id), f"Style #{style_id} does not exist (it may have been deleted).")


def delete_style(*, style_id: int, editor: str) -> None:
    """Refused while characters use the style, so nobody loses a look silently. Needs style.delete (admin);
    the audit row keeps the deleted style's fields as `before`, so the trail still says what it was."""
    with session_scope() as s:
        role = authorize(s, who=editor, action="style.delete")
        style = require(s.get(Style, style_id), f"Style #{style_id} does not exist.")
        used = s.execute(sa.select(sa.func.count()).where(Character.style_id == style_id)).scalar_one()
        if used:
            raise ValidationError(f"'{style.name}' is used by {used} character(s); move them to another style first.")
        record(s, who=editor, role=role, action="style.delete", entity="style", entity_id=style_id,
               before=snapshot(style, AUDIT_FIELDS), label=style.name)
        s.delete(style)
