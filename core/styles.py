"""Styles: a named look (description, prompt fragment, palette) shared by characters."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import select

from core.errors import DuplicateError, ValidationError, require
from db.engine import session_scope
from db.models import Character, Style, utcnow

NAME_MAX = 80
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass
class StyleInput:
    name: str
    description: str = ""
    prompt_fragment: str = ""
    palette: list[str] = field(default_factory=list)


def _validate(data: StyleInput) -> StyleInput:
    name = " ".join((data.name or "").split())
    if not name:
        raise ValidationError("Style name is required.")
    if len(name) > NAME_MAX:
        raise ValidationError(f"Style name is {len(name)} characters; the limit is {NAME_MAX}.")
    palette = [p.strip() for p in data.palette if p.strip()]
    for colour in palette:
        if not _HEX.match(colour):
            raise ValidationError(f"Palette colour '{colour}' is not a #rrggbb hex colour.")
    return StyleInput(name, (data.description or "").strip(), (data.prompt_fragment or "").strip(), palette)


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
    clean = _validate(data)
    with session_scope() as s:
        _ensure_unique(s, clean.name)
        style = Style(**clean.__dict__, created_by=editor, updated_by=editor)
        s.add(style)
        s.flush()
        s.refresh(style)
        return style


def update_style(*, style_id: int, data: StyleInput, editor: str) -> Style:
    """A renamed style changes the text of every character that uses it (the style name is part of what
    is embedded): their re-embedding is queued after the commit, as saving a character does."""
    clean = _validate(data)
    with session_scope() as s:
        style = require(s.get(Style, style_id), f"Style #{style_id} does not exist.")
        _ensure_unique(s, clean.name, exclude_id=style_id)
        renamed = style.name != clean.name
        for k, v in clean.__dict__.items():
            setattr(style, k, v)
        style.updated_by, style.updated_at = editor, utcnow()
        s.add(style)
        s.flush()
        s.refresh(style)
        users = list(s.execute(sa.select(Character.id).where(Character.style_id == style_id)).scalars()) \
            if renamed else []
    if users:
        from core import jobs

        jobs.request_embedding(subject_type="character", ids=users)
    return style


def delete_style(*, style_id: int) -> None:
    """Refused while characters use the style, so nobody loses a look silently."""
    with session_scope() as s:
        style = require(s.get(Style, style_id), f"Style #{style_id} does not exist.")
        used = s.execute(sa.select(sa.func.count()).where(Character.style_id == style_id)).scalar_one()
        if used:
            raise ValidationError(f"'{style.name}' is used by {used} character(s); move them to another style first.")
        s.delete(style)
