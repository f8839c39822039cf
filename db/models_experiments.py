"""SQLModel mappings of the prompt-experiment tables (created by migration 0014, never by create_all).

Kept apart from db/models.py so the experiment feature is one self-contained addition.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from db.models import _ts, utcnow


class Panel(SQLModel, table=True):
    """A named, fixed test bed: characters × slots (no slots = the whole shot list)."""

    __tablename__ = "panel"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(120), nullable=False, unique=True))
    description: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    character_ids: list = Field(default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False))
    slot_keys: list = Field(default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False))
    source: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class Experiment(SQLModel, table=True):
    """Two or more template bodies ("arms", snapshotted) run over one panel."""

    __tablename__ = "experiment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(120), nullable=False))
    panel_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("panel.id"), nullable=False))
    template_name: str = Field(sa_column=sa.Column(sa.String(80), nullable=False))
    arms: list = Field(default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False))
    cancelled: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    promoted_arm: int | None = None
    promoted_version: int | None = None
    promoted_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(254)))
    promoted_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class ExperimentCell(SQLModel, table=True):
    """One image of one arm for one (character, slot); never a variation."""

    __tablename__ = "experiment_cell"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("experiment.id", ondelete="CASCADE"),
                                                   nullable=False))
    arm: int
    character_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"),
                                                  nullable=False))
    slot_key: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    attempt: int = 1
    status: str = "pending"
    rendered_prompt: str = ""
    provider: str = ""
    model: str = ""
    path: str | None = None
    thumb_path: str | None = None
    cost_usd: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(12, 6)))
    duration_ms: int | None = None
    drift: float | None = None  # pixel distance from the character's references, as in core/drift
    ai_call_id: int | None = None
    # fencing number: bumped by every claim; only the holder of the current value commits (core/experiment_cells.py)
    claim: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    job_id: int | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class ExperimentPick(SQLModel, table=True):
    """The tuner's verdict on one (character, slot) row: a winning arm, a tie, or both bad."""

    __tablename__ = "experiment_pick"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("experiment.id", ondelete="CASCADE"),
                                                   nullable=False))
    character_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"),
                                                  nullable=False))
    slot_key: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    outcome: str
    winner_arm: int | None = None
    reason_codes: list = Field(default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False))
    note: str = ""
    picked_by: str = ""
    picked_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
