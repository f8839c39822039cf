"""review sessions: 'disputed' images, one vote per reviewer and image, index-backed claims

Revision ID: 0022
Revises: 0021

Double review keeps each reviewer's independent vote; a disagreement leaves the image
'disputed' until an editor adjudicates. One (non-adjudication) vote per reviewer and image is
enforced by a partial unique index, so a re-decision replaces the vote. Claiming the next
images reads only completed, unreviewed variations through a partial index (no scan of the
whole variation table per claim), and claim lookups by reviewer / expiry are indexed.
"""
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE variation DROP CONSTRAINT ck_variation_review")
    op.execute("ALTER TABLE variation ADD CONSTRAINT ck_variation_review "
               "CHECK (review_status IN ('unreviewed','approved','rejected','disputed'))")
    op.execute("CREATE UNIQUE INDEX ux_review_vote_reviewer ON review_vote (variation_id, reviewer) "
               "WHERE NOT adjudication")
    op.execute("CREATE INDEX ix_review_vote_day ON review_vote (decided_at)")
    op.execute("CREATE INDEX ix_review_claim_expires ON review_claim (expires_at)")
    op.execute("CREATE INDEX ix_variation_unreviewed ON variation (character_id, slot_key, id) "
               "WHERE status = 'completed' AND review_status = 'unreviewed'")
    op.execute("CREATE INDEX ix_variation_disputed ON variation (id) WHERE review_status = 'disputed'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_variation_disputed")
    op.execute("DROP INDEX ix_variation_unreviewed")
    op.execute("DROP INDEX ix_review_claim_expires")
    op.execute("DROP INDEX ix_review_vote_day")
    op.execute("DROP INDEX ux_review_vote_reviewer")
    op.execute("UPDATE variation SET review_status = 'unreviewed' WHERE review_status = 'disputed'")
    op.execute("ALTER TABLE variation DROP CONSTRAINT ck_variation_review")
    op.execute("ALTER TABLE variation ADD CONSTRAINT ck_variation_review "
               "CHECK (review_status IN ('unreviewed','approved','rejected'))")
