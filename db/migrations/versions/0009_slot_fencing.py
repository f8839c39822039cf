"""variation.claim / variation.provider_called_at: fencing tokens for slot execution

Revision ID: 0009
Revises: 0008

`claim` counts how often a slot was claimed by a job. A worker remembers the
number it claimed with and commits its result only while the row still carries
it, so a worker that was paused past the stall window (and whose slot was
requeued and claimed again) cannot overwrite the newer result. Files are named
per claim, so the loser never overwrites the winner's image either.
`provider_called_at` is set, under the same fence, right before the paid call:
"cancel run" stops slots that have not reached it.
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE variation ADD COLUMN claim integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE variation ADD COLUMN provider_called_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE variation DROP COLUMN provider_called_at")
    op.execute("ALTER TABLE variation DROP COLUMN claim")
