"""experiment_cell.claim: a fencing number, so a paused worker never pays or commits a cell twice

Revision ID: 0021
Revises: 0016
"""
from alembic import op

revision = "0021"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE experiment_cell ADD COLUMN claim integer NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE experiment_cell DROP COLUMN claim")
