"""member / audit_event / review_claim / review_vote: a team on one server

Revision ID: 0016
Revises: 0015

Members carry a role (viewer < reviewer < editor < admin). Every write appends an
audit_event in its own transaction. Review claims keep two reviewers off the same
image; review votes keep each reviewer's independent decision (double review).
"""
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ROLES = "('viewer','reviewer','editor','admin')"


def upgrade() -> None:
    op.execute(f"""
        CREATE TABLE member (
            id serial PRIMARY KEY,
            identity varchar(254) NOT NULL UNIQUE CHECK (identity = lower(identity) AND identity <> ''),
            display_name varchar(120) NOT NULL DEFAULT '',
            role varchar(12) NOT NULL CHECK (role IN {ROLES}),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            created_by varchar(254) NOT NULL DEFAULT ''
        )
    """)
    op.execute("""
        CREATE TABLE audit_event (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor varchar(254) NOT NULL,
            role varchar(12) NOT NULL DEFAULT '',
            action varchar(60) NOT NULL,
            entity varchar(40) NOT NULL,
            entity_id varchar(80) NOT NULL DEFAULT '',
            label text NOT NULL DEFAULT '',
            changes jsonb NOT NULL DEFAULT '{}'
        )
    """)
    op.execute("CREATE INDEX ix_audit_event_at ON audit_event (at DESC, id DESC)")
    op.execute("CREATE INDEX ix_audit_event_entity ON audit_event (entity, entity_id, at DESC)")
    op.execute("CREATE INDEX ix_audit_event_actor ON audit_event (actor, at DESC)")
    op.execute("""
        CREATE TABLE review_claim (
            variation_id integer PRIMARY KEY REFERENCES variation(id) ON DELETE CASCADE,
            reviewer varchar(254) NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
        )
    """)
    op.execute("CREATE INDEX ix_review_claim_reviewer ON review_claim (reviewer, expires_at)")
    op.execute("""
        CREATE TABLE review_vote (
            id serial PRIMARY KEY,
            variation_id integer NOT NULL REFERENCES variation(id) ON DELETE CASCADE,
            reviewer varchar(254) NOT NULL,
            decision varchar(12) NOT NULL CHECK (decision IN ('approved','rejected')),
            reason_codes jsonb NOT NULL DEFAULT '[]',
            note text NOT NULL DEFAULT '',
            seconds double precision,
            adjudication boolean NOT NULL DEFAULT false,
            decided_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX ix_review_vote_variation ON review_vote (variation_id)")
    op.execute("CREATE INDEX ix_review_vote_reviewer ON review_vote (reviewer, decided_at)")


def downgrade() -> None:
    for table in ("review_vote", "review_claim", "audit_event", "member"):
        op.execute(f"DROP TABLE {table}")
