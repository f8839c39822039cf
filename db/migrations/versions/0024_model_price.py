"""model_price: the team's own prices per model, over the defaults shipped in core/ai/pricing_table.json

Revision ID: 0024
Revises: 0023

An admin sets what the team's contract says (a rate per 1M tokens, or per image); every cost computed
after that uses it, in every process (workers re-read within PRICES_TTL_S). Removing a row goes back to
the shipped default.
"""
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE model_price (
            model varchar(120) PRIMARY KEY,
            rates jsonb NOT NULL,
            updated_by varchar(254) NOT NULL DEFAULT '',
            updated_at timestamptz NOT NULL DEFAULT now(),
            version integer NOT NULL DEFAULT 1
        )""")


def downgrade() -> None:
    op.execute("DROP TABLE model_price")
