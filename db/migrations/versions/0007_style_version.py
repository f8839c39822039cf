"""style.version: optimistic locking for style edits, like characters have

Revision ID: 0007
Revises: 0006

Two editors who open the same style and both save: the second save names
the first editor and changes nothing, instead of silently overwriting.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("style", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("style", "version")
