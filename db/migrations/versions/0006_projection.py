"""projection / projection_point: cached 2-D maps of an embedding space, with their parameters

Revision ID: 0006
Revises: 0005

A projection is one fit of one (space, subject_type) set. Its points carry the
content hash of the embedding they were computed from, so a changed embedding
is visible as a stale point, and `placed_by` says whether a point took part in
the fit or was placed afterwards with the fitted model's transform().
The fitted model itself is a file under MEDIA_ROOT (model_path): models hold
the training vectors and can be tens of megabytes, which does not belong in a row.
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE projection (
            id serial PRIMARY KEY,
            space varchar(40) NOT NULL,
            subject_type varchar(30) NOT NULL,
            method varchar(10) NOT NULL DEFAULT 'umap',
            n_neighbors integer NOT NULL,
            min_dist real NOT NULL,
            metric varchar(20) NOT NULL,
            params jsonb NOT NULL DEFAULT '{}',
            status varchar(10) NOT NULL DEFAULT 'queued',
            phase text NOT NULL DEFAULT '',
            message text NOT NULL DEFAULT '',
            error text,
            n_points integer NOT NULL DEFAULT 0,
            model_path text,
            job_id integer,
            fit_seconds real,
            created_by varchar(120) NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            fitted_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_projection_method CHECK (method IN ('umap','pca','trivial')),
            CONSTRAINT ck_projection_status CHECK (status IN ('queued','running','ready','failed')),
            CONSTRAINT ck_projection_n_neighbors CHECK (n_neighbors >= 2),
            CONSTRAINT ck_projection_min_dist CHECK (min_dist >= 0 AND min_dist <= 1)
        )
    """)
    op.execute("CREATE INDEX ix_projection_set ON projection (space, subject_type, id DESC)")
    op.execute("""
        CREATE TABLE projection_point (
            projection_id integer NOT NULL REFERENCES projection(id) ON DELETE CASCADE,
            subject_id integer NOT NULL,
            x real NOT NULL,
            y real NOT NULL,
            content_hash varchar(64),
            placed_by varchar(10) NOT NULL DEFAULT 'fit',
            cluster integer,
            PRIMARY KEY (projection_id, subject_id),
            CONSTRAINT ck_projection_point_placed_by CHECK (placed_by IN ('fit','transform'))
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE projection_point")
    op.execute("DROP TABLE projection")
