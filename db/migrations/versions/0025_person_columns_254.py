"""Columns that hold a person's name are as wide as an identity (254, the longest e-mail address)

Revision ID: 0025
Revises: 0024

Members and sign-in accept e-mail identities up to 254 characters (member.identity, audit_event.actor,
review_vote.reviewer are varchar(254)), but the older *_by columns were varchar(120): a member with a
121-254 character address could sign in and then failed every write with a raw "value too long".
Widening a varchar is a catalogue change in Postgres (no table rewrite).
"""
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

COLUMNS = [
    ("ai_call", "requested_by"), ("character", "created_by"), ("character", "updated_by"),
    ("duplicate_kept", "kept_by"), ("experiment", "created_by"), ("experiment", "promoted_by"),
    ("experiment_pick", "picked_by"), ("generation_run", "requested_by"), ("panel", "created_by"),
    ("projection", "created_by"), ("prompt_version", "author"), ("reference_image", "created_by"),
    ("reference_image", "updated_by"), ("style", "created_by"), ("style", "updated_by"),
    ("tag_concept", "created_by"), ("variation", "reviewed_by"),
]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN {column} TYPE varchar(254)')


def downgrade() -> None:
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN {column} TYPE varchar(120)')
