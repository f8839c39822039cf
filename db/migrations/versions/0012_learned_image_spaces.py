"""image-learned and image-clip spaces: one cosine HNSW index each; pairs a reviewer kept as "not duplicates"

Revision ID: 0012
Revises: 0014
"""
from alembic import op

revision = "0012"
down_revision = "0014"
branch_labels = None
depends_on = None

# space -> dimensions (core.vectors.image_embedders: EfficientNet-Lite0 pooled features; a 512-d CLIP-class model)
SPACES = {"image-learned": 1280, "image-clip": 512}


def upgrade() -> None:
    for space, dims in SPACES.items():
        op.execute(
            f"CREATE INDEX ix_embedding_hnsw_{space.replace('-', '_')} ON embedding USING hnsw "
            f"((vector::vector({dims})) vector_cosine_ops) WHERE space = '{space}'"
        )
    # A pair of images a reviewer looked at and kept both: the Duplicates view stops listing it.
    # Stored with the smaller (type, id) first so a pair has one row whichever side it was found from.
    op.execute("""
        CREATE TABLE duplicate_kept (
            a_type varchar(30) NOT NULL,
            a_id integer NOT NULL,
            b_type varchar(30) NOT NULL,
            b_id integer NOT NULL,
            kept_by varchar(120) NOT NULL DEFAULT '',
            kept_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (a_type, a_id, b_type, b_id)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE duplicate_kept")
    for space in SPACES:
        op.execute(f"DROP INDEX ix_embedding_hnsw_{space.replace('-', '_')}")
