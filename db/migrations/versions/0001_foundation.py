"""foundation: vector extension, style, character, reference_image

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _audit() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(120), nullable=False, server_default=""),
        sa.Column("updated_by", sa.String(120), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "style",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(80), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("prompt_fragment", sa.Text, nullable=False, server_default=""),
        sa.Column("palette", postgresql.JSONB, nullable=False, server_default="[]"),
        *_audit(),
    )
    op.create_table(
        "character",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("traits", postgresql.JSONB, nullable=False, server_default="[]"),
        sa.Column("style_id", sa.Integer, sa.ForeignKey("style.id", ondelete="SET NULL"), index=True),
        sa.Column("base_seed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("notes", sa.Text, nullable=False, server_default=""),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        *_audit(),
    )
    op.create_index("ix_character_name_lower", "character", [sa.text("lower(name)")])
    op.create_table(
        "reference_image",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("character_id", sa.Integer, sa.ForeignKey("character.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("thumb_path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("mime", sa.String(40), nullable=False),
        sa.Column("byte_size", sa.Integer, nullable=False),
        sa.Column("caption", sa.Text, nullable=False, server_default=""),
        sa.Column("alt_text", sa.Text, nullable=False, server_default=""),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("source_url", sa.Text),
        sa.Column("original_filename", sa.Text, nullable=False, server_default=""),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.String(120), nullable=False, server_default=""),
        sa.UniqueConstraint("character_id", "sha256", name="uq_reference_image_character_sha"),
        sa.CheckConstraint("source in ('upload','url')", name="ck_reference_image_source"),
    )


def downgrade() -> None:
    op.drop_table("reference_image")
    op.drop_table("character")
    op.drop_table("style")
