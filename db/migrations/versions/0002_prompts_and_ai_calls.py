"""prompt versions and the AI call log

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("template_name", sa.String(80), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("author", sa.String(120), nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("template_name", "version", name="uq_prompt_version_name_version"),
    )
    op.create_index(
        "uq_prompt_version_one_active", "prompt_version", ["template_name"], unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "ai_call",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now(), index=True),
        sa.Column("function", sa.String(60), nullable=False, index=True),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("status", sa.String(12), nullable=False, index=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("model", sa.String(80), nullable=False, server_default=""),
        sa.Column("template_name", sa.String(80)),
        sa.Column("template_version", sa.Integer),
        sa.Column("template_layer", sa.String(10)),
        sa.Column("prompt_hash", sa.String(64)),
        sa.Column("tokens_in", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens_out", sa.Integer, nullable=False, server_default="0"),
        sa.Column("images", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Numeric(12, 6)),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("steps", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("output", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("job_id", sa.Integer),
        sa.Column("subject_type", sa.String(30)),
        sa.Column("subject_id", sa.Integer),
        sa.Column("requested_by", sa.String(120), nullable=False, server_default=""),
    )
    op.create_index("ix_ai_call_subject", "ai_call", ["subject_type", "subject_id"])


def downgrade() -> None:
    op.drop_table("ai_call")
    op.drop_table("prompt_version")
