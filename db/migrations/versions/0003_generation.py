"""generation runs and variations

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _apply_procrastinate_schema() -> None:
    """The job queue's own tables, applied once (its schema is not idempotent)."""
    from procrastinate.schema import SchemaManager

    bind = op.get_bind()
    if bind.exec_driver_sql("select to_regclass('procrastinate_jobs')").scalar() is not None:
        return
    raw = bind.connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute(SchemaManager.get_schema())  # no parameters: psycopg sends it as is


def upgrade() -> None:
    _apply_procrastinate_schema()
    op.create_table(
        "generation_run",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("character_id", sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("status", sa.String(12), nullable=False, server_default="queued"),
        sa.Column("requested_by", sa.String(120), nullable=False, server_default=""),
        sa.Column("provider", sa.String(20), nullable=False, server_default=""),
        sa.Column("template_override", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status in ('queued','running','completed','partial','failed','cancelled')",
                           name="ck_generation_run_status"),
    )
    # Idempotency: at most one active run per character.
    op.create_index("uq_generation_run_one_active", "generation_run", ["character_id"], unique=True,
                    postgresql_where=sa.text("status in ('queued','running')"))
    op.create_table(
        "variation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("generation_run.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("character_id", sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("slot_key", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("rendered_prompt", sa.Text, nullable=False, server_default=""),
        sa.Column("template_version", sa.Integer),
        sa.Column("template_layer", sa.String(10)),
        sa.Column("provider", sa.String(20), nullable=False, server_default=""),
        sa.Column("model", sa.String(80), nullable=False, server_default=""),
        sa.Column("error", sa.Text),
        sa.Column("path", sa.Text),
        sa.Column("thumb_path", sa.Text),
        sa.Column("cost_usd", sa.Numeric(12, 6)),
        sa.Column("ai_call_id", sa.Integer),
        sa.Column("job_id", sa.Integer),
        sa.Column("rejection_context", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("review_status", sa.String(12), nullable=False, server_default="unreviewed"),
        sa.Column("reason_codes", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("review_note", sa.Text, nullable=False, server_default=""),
        sa.Column("reviewed_by", sa.String(120)),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("drift_score", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("run_id", "slot_key", "attempt", name="uq_variation_run_slot_attempt"),
        sa.CheckConstraint("status in ('pending','generating','completed','failed','cancelled')",
                           name="ck_variation_status"),
        sa.CheckConstraint("review_status in ('unreviewed','approved','rejected')", name="ck_variation_review"),
    )
    op.create_index("ix_variation_character_slot", "variation", ["character_id", "slot_key", "id"])
    op.create_index("ix_variation_status", "variation", ["status"])


def downgrade() -> None:
    op.drop_table("variation")
    op.drop_table("generation_run")
