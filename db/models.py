"""SQLModel tables.

Every table is created by an Alembic migration (db/migrations), never by
`create_all` in a production path. Later issues add generation runs,
variations, embeddings, prompt versions and the AI call log; ids are integers
and subjects of embeddings are (type, id) pairs so those fit.
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kw) -> sa.Column:
    return sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now(), **kw)


class Style(SQLModel, table=True):
    __tablename__ = "style"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(80), nullable=False, unique=True))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    prompt_fragment: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    palette: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]"),
        description="Hex colours the offline renderer uses for this style",
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))


class Character(SQLModel, table=True):
    __tablename__ = "character"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=sa.Column(sa.String(100), nullable=False, unique=True))
    name: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    traits: list[str] = Field(
        default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]")
    )
    style_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer, sa.ForeignKey("style.id", ondelete="SET NULL"), index=True)
    )
    base_seed: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    notes: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    archived: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))


class ReferenceImage(SQLModel, table=True):
    __tablename__ = "reference_image"

    id: int | None = Field(default=None, primary_key=True)
    character_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    path: str = Field(sa_column=sa.Column(sa.Text, nullable=False), description="Relative to MEDIA_ROOT")
    thumb_path: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    width: int
    height: int
    mime: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    byte_size: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    caption: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    alt_text: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    source: str = Field(sa_column=sa.Column(sa.String(10), nullable=False), description="upload | url")
    source_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    original_filename: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    position: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))

    __table_args__ = (
        sa.UniqueConstraint("character_id", "sha256", name="uq_reference_image_character_sha"),
        sa.CheckConstraint("source in ('upload','url')", name="ck_reference_image_source"),
    )
