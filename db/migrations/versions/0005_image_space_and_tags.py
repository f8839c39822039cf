"""image-local embedding space index; semantic tag concepts and their assignments

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

IMAGE_SPACE, IMAGE_DIMS = "image-local", 256


def upgrade() -> None:
    op.execute(
        f"CREATE INDEX ix_embedding_hnsw_image_local ON embedding USING hnsw "
        f"((vector::vector({IMAGE_DIMS})) vector_cosine_ops) WHERE space = '{IMAGE_SPACE}'"
    )
    # Counting a filter's matches (to pick ef_search or exact search) is an index-only scan on this.
    op.execute("CREATE INDEX ix_embedding_space_type ON embedding (space, subject_type, subject_id)")
    op.execute("""
        CREATE TABLE tag_concept (
            id serial PRIMARY KEY,
            name varchar(60) NOT NULL UNIQUE,
            description text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by varchar(120) NOT NULL DEFAULT ''
        )
    """)
    # A subject's nearest tags above the threshold, recomputed when its embedding or the tag list changes.
    op.execute("""
        CREATE TABLE subject_tag (
            subject_type varchar(30) NOT NULL,
            subject_id integer NOT NULL,
            tag_id integer NOT NULL REFERENCES tag_concept(id) ON DELETE CASCADE,
            space varchar(40) NOT NULL,
            similarity real NOT NULL,
            PRIMARY KEY (subject_type, subject_id, tag_id)
        )
    """)
    op.execute("CREATE INDEX ix_subject_tag_tag ON subject_tag (tag_id, subject_type)")


def downgrade() -> None:
    op.execute("DROP TABLE subject_tag")
    op.execute("DROP TABLE tag_concept")
    op.execute("DROP INDEX ix_embedding_space_type")
    op.execute("DROP INDEX ix_embedding_hnsw_image_local")
