"""SQLModel tables.

Every table is created by an Alembic migration (db/migrations), never by
`create_all` in a production path. Later issues add generation runs,
variations, embeddings, prompt versions and the AI call log; ids are integers
and subjects of embeddings are (type, id) pairs so those fit.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

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
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))


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
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))


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
    created_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"),
                         description="Optimistic locking of caption / alt-text edits")
    updated_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    import_note: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""),
                             description="What the upload did on purpose, e.g. first frame of an animation kept")

    __table_args__ = (
        sa.UniqueConstraint("character_id", "sha256", name="uq_reference_image_character_sha"),
        sa.CheckConstraint("source in ('upload','url')", name="ck_reference_image_source"),
    )


class PromptVersion(SQLModel, table=True):
    """A saved version of a prompt template; at most one active per template (partial unique index)."""

    __tablename__ = "prompt_version"

    id: int | None = Field(default=None, primary_key=True)
    template_name: str = Field(sa_column=sa.Column(sa.String(80), nullable=False, index=True))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    author: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    note: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    is_active: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())

    __table_args__ = (sa.UniqueConstraint("template_name", "version", name="uq_prompt_version_name_version"),)


class AICall(SQLModel, table=True):
    """One row per provider call (or attempted call): the cost and audit log."""

    __tablename__ = "ai_call"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(index=True))
    function: str = Field(sa_column=sa.Column(sa.String(60), nullable=False, index=True))
    phase: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(12), nullable=False, index=True))
    provider: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    model: str = Field(default="", sa_column=sa.Column(sa.String(80), nullable=False, server_default=""))
    template_name: str | None = Field(default=None, sa_column=sa.Column(sa.String(80)))
    template_version: int | None = None
    template_layer: str | None = Field(default=None, sa_column=sa.Column(sa.String(10)))
    prompt_hash: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    tokens_in: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    tokens_out: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    images: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    cost_usd: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(12, 6)))
    duration_ms: int | None = None
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    steps: list = Field(default_factory=list, sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]"))
    output: dict = Field(default_factory=dict, sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="{}"))
    job_id: int | None = None
    subject_type: str | None = Field(default=None, sa_column=sa.Column(sa.String(30)))
    subject_id: int | None = None
    requested_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))


RUN_ACTIVE = ("queued", "running")  # at most one such run per character (partial unique index)


class GenerationRun(SQLModel, table=True):
    """One request to generate the shot list for one character."""

    __tablename__ = "generation_run"

    id: int | None = Field(default=None, primary_key=True)
    character_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    status: str = Field(default="queued", sa_column=sa.Column(sa.String(12), nullable=False, server_default="queued"))
    requested_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    provider: str = Field(default="", sa_column=sa.Column(sa.String(20), nullable=False, server_default=""))
    template_override: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class Variation(SQLModel, table=True):
    """One attempt at one slot of a run; a slot regenerated gets a new row with attempt + 1."""

    __tablename__ = "variation"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("generation_run.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    character_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    slot_key: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    attempt: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    status: str = Field(default="pending", sa_column=sa.Column(sa.String(12), nullable=False, server_default="pending"))
    rendered_prompt: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    template_version: int | None = None
    template_layer: str | None = Field(default=None, sa_column=sa.Column(sa.String(10)))
    provider: str = Field(default="", sa_column=sa.Column(sa.String(20), nullable=False, server_default=""))
    model: str = Field(default="", sa_column=sa.Column(sa.String(80), nullable=False, server_default=""))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    path: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    thumb_path: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    cost_usd: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(12, 6)))
    ai_call_id: int | None = None
    job_id: int | None = None
    # fencing token: bumped by every claim (and by recovery/cancel); only the holder of the current value commits
    claim: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    provider_called_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    rejection_context: list = Field(default_factory=list,
                                    sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]"))
    review_status: str = Field(default="unreviewed",
                               sa_column=sa.Column(sa.String(12), nullable=False, server_default="unreviewed"))
    reason_codes: list = Field(default_factory=list,
                               sa_column=sa.Column(postgresql.JSONB, nullable=False, server_default="[]"))
    review_note: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    reviewed_by: str | None = Field(default=None, sa_column=sa.Column(sa.String(254)))
    reviewed_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    drift_score: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))

    __table_args__ = (sa.UniqueConstraint("run_id", "slot_key", "attempt", name="uq_variation_run_slot_attempt"),)


class Embedding(SQLModel, table=True):
    """One vector per (subject, space). The table is created by raw SQL in migration 0004
    (untyped `vector` column + per-space partial HNSW expression indexes); this mapping
    is for reads and simple updates, vectors are written with explicit SQL casts."""

    __tablename__ = "embedding"

    id: int | None = Field(default=None, primary_key=True)
    subject_type: str
    subject_id: int
    space: str
    model_id: str = ""
    dims: int
    content_hash: str | None = None
    status: str = "queued"
    error: str | None = None
    embedded_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class Projection(SQLModel, table=True):
    """A cached 2-D map of one (space, subject_type) set; created by raw SQL in migration 0006."""

    __tablename__ = "projection"

    id: int | None = Field(default=None, primary_key=True)
    space: str
    subject_type: str
    method: str = "umap"
    n_neighbors: int
    min_dist: float
    metric: str
    params: dict = Field(default_factory=dict, sa_column=sa.Column(postgresql.JSONB, nullable=False,
                                                                   server_default="{}"))
    status: str = "queued"
    phase: str = ""
    message: str = ""
    error: str | None = None
    n_points: int = 0
    model_path: str | None = None
    job_id: int | None = None
    fit_seconds: float | None = None
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    fitted_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ProjectionPoint(SQLModel, table=True):
    """One subject's coordinates in a projection, with the embedding hash it came from."""

    __tablename__ = "projection_point"

    projection_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("projection.id", ondelete="CASCADE"),
                                                   primary_key=True))
    subject_id: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    x: float
    y: float
    content_hash: str | None = None
    placed_by: str = "fit"
    cluster: int | None = None


class ModelPrice(SQLModel, table=True):
    """The team's price for one model (migration 0024); overrides the shipped default in pricing_table.json."""

    __tablename__ = "model_price"

    model: str = Field(sa_column=sa.Column(sa.String(120), primary_key=True))
    rates: dict = Field(default_factory=dict, sa_column=sa.Column(postgresql.JSONB, nullable=False))
    updated_by: str = Field(default="", sa_column=sa.Column(sa.String(254), nullable=False, server_default=""))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))
