"""SQLModel mappings of the team tables (created by migration 0016, never by create_all).

Members and roles, the audit trail, review claims and per-reviewer votes (double review).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from db.models import _ts, utcnow


class Member(SQLModel, table=True):
    """A person allowed in, keyed by the identity the sign-in provider gives (lower-cased e-mail)."""

    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    identity: str = Field(sa_column=sa.Column(sa.String(254), nullable=False, unique=True))
    display_name: str = Field(default="", sa_column=sa.Column(sa.String(120), nullable=False, server_default=""))
    role: str = Field(sa_column=sa.Column(sa.String(12), nullable=False))
    active: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.true()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))


class AuditEvent(SQLModel, table=True):
    """One write by one person: appended in the same transaction as the write itself."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    actor: str = Field(sa_column=sa.Column(sa.String(254), nullable=False))
    role: str = Field(default="", sa_column=sa.Column(sa.String(12), nullable=False, server_default=""))
    action: str = Field(sa_column=sa.Column(sa.String(60), nullable=False))
    entity: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    entity_id: str = Field(default="", sa_column=sa.Column(sa.String(80), nullable=False, server_default=""))
    label: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    changes: dict = Field(default_factory=dict,
                          sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="{}"))


class ReviewClaim(SQLModel, table=True):
    """An unreviewed image held for one reviewer until `expires_at` (renewed while they work)."""

    __tablename__ = "review_claim"

    variation_id: int = Field(sa_column=sa.Column(
        sa.Integer, sa.ForeignKey("variation.id", ondelete="CASCADE"), primary_key=True))
    reviewer: str = Field(sa_column=sa.Column(sa.String(254), nullable=False))
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ReviewVote(SQLModel, table=True):
    """One reviewer's independent decision on one image (double review keeps k of them)."""

    __tablename__ = "review_vote"

    id: int | None = Field(default=None, primary_key=True)
    variation_id: int = Field(sa_column=sa.Column(
        sa.Integer, sa.ForeignKey("variation.id", ondelete="CASCADE"), nullable=False))
    reviewer: str = Field(sa_column=sa.Column(sa.String(254), nullable=False))
    decision: str = Field(sa_column=sa.Column(sa.String(12), nullable=False))
    reason_codes: list = Field(default_factory=list,
                               sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]"))
    note: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    seconds: float | None = None
    adjudication: bool = Field(default=False,
                               sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    decided_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
