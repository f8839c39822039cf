"""panel / experiment / experiment_cell / experiment_pick: prompt experiments on a fixed test bed

Revision ID: 0014
Revises: 0009

A panel is a named set of characters (and optionally slots). An experiment runs
two or more template versions ("arms", bodies snapshotted at creation so a later
edit cannot change what was measured) over a panel: one cell per (arm, character,
slot). Cells are not variations: experiment images never reach the coverage grid
or the review queue. A pick is the tuner's verdict on one (character, slot) row.
"""
from alembic import op

revision = "0014"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE panel (
            id serial PRIMARY KEY,
            name varchar(120) NOT NULL UNIQUE,
            description text NOT NULL DEFAULT '',
            character_ids jsonb NOT NULL DEFAULT '[]',
            slot_keys jsonb NOT NULL DEFAULT '[]',
            source text NOT NULL DEFAULT '',
            created_by varchar(120) NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("""
        CREATE TABLE experiment (
            id serial PRIMARY KEY,
            name varchar(120) NOT NULL,
            panel_id integer NOT NULL REFERENCES panel(id) ON DELETE RESTRICT,
            template_name varchar(80) NOT NULL,
            arms jsonb NOT NULL,
            cancelled boolean NOT NULL DEFAULT false,
            created_by varchar(120) NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            promoted_arm integer,
            promoted_version integer,
            promoted_by varchar(120),
            promoted_at timestamptz
        )
    """)
    op.execute("""
        CREATE TABLE experiment_cell (
            id serial PRIMARY KEY,
            experiment_id integer NOT NULL REFERENCES experiment(id) ON DELETE CASCADE,
            arm integer NOT NULL,
            character_id integer NOT NULL REFERENCES character(id) ON DELETE CASCADE,
            slot_key varchar(40) NOT NULL,
            seed bigint NOT NULL,
            attempt integer NOT NULL DEFAULT 1,
            status varchar(12) NOT NULL DEFAULT 'pending',
            rendered_prompt text NOT NULL DEFAULT '',
            provider varchar(20) NOT NULL DEFAULT '',
            model varchar(80) NOT NULL DEFAULT '',
            path text,
            thumb_path text,
            cost_usd numeric(12, 6),
            duration_ms integer,
            drift real,
            ai_call_id integer,
            job_id integer,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz,
            CONSTRAINT uq_experiment_cell UNIQUE (experiment_id, arm, character_id, slot_key),
            CONSTRAINT ck_experiment_cell_status
                CHECK (status IN ('pending','generating','completed','failed','cancelled'))
        )
    """)
    op.execute("CREATE INDEX ix_experiment_cell_experiment ON experiment_cell (experiment_id, status)")
    op.execute("""
        CREATE TABLE experiment_pick (
            id serial PRIMARY KEY,
            experiment_id integer NOT NULL REFERENCES experiment(id) ON DELETE CASCADE,
            character_id integer NOT NULL REFERENCES character(id) ON DELETE CASCADE,
            slot_key varchar(40) NOT NULL,
            outcome varchar(10) NOT NULL,
            winner_arm integer,
            reason_codes jsonb NOT NULL DEFAULT '[]',
            note text NOT NULL DEFAULT '',
            picked_by varchar(120) NOT NULL DEFAULT '',
            picked_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_experiment_pick_row UNIQUE (experiment_id, character_id, slot_key),
            CONSTRAINT ck_experiment_pick_outcome CHECK (outcome IN ('win','tie','both_bad')),
            CONSTRAINT ck_experiment_pick_winner CHECK ((outcome = 'win') = (winner_arm IS NOT NULL))
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE experiment_pick")
    op.execute("DROP TABLE experiment_cell")
    op.execute("DROP TABLE experiment")
    op.execute("DROP TABLE panel")
