"""embeddings: one row per (subject, space), HNSW cosine index per space

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# space -> dimensions; each space gets its own partial expression index (pgvector 0.6.2 has no halfvec).
SPACES = {"text-local": 384, "text-openai": 1536}


def upgrade() -> None:
    op.execute("""
        CREATE TABLE embedding (
            id serial PRIMARY KEY,
            subject_type varchar(30) NOT NULL,
            subject_id integer NOT NULL,
            space varchar(40) NOT NULL,
            model_id varchar(120) NOT NULL DEFAULT '',
            dims integer NOT NULL,
            content_hash varchar(64),
            vector vector,
            status varchar(10) NOT NULL DEFAULT 'queued',
            error text,
            embedded_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_embedding_subject_space UNIQUE (subject_type, subject_id, space),
            CONSTRAINT ck_embedding_status CHECK (status IN ('queued','current','failed')),
            -- never an empty or partial vector
            CONSTRAINT ck_embedding_vector_dims CHECK (vector IS NULL OR vector_dims(vector) = dims)
        )
    """)
    for space, dims in SPACES.items():
        name = "ix_embedding_hnsw_" + space.replace("-", "_")
        op.execute(
            f"CREATE INDEX {name} ON embedding USING hnsw ((vector::vector({dims})) vector_cosine_ops) "
            f"WHERE space = '{space}'"
        )


def downgrade() -> None:
    op.execute("DROP TABLE embedding")
