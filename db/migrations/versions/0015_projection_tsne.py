"""projection.method may be 'tsne': small maps are laid out with t-SNE (no JIT compile on a fresh machine)

Revision ID: 0015
Revises: 0012
"""
from alembic import op

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE projection DROP CONSTRAINT ck_projection_method")
    op.execute("ALTER TABLE projection ADD CONSTRAINT ck_projection_method "
               "CHECK (method IN ('umap','tsne','pca','trivial'))")


def downgrade() -> None:
    op.execute("UPDATE projection SET method = 'umap' WHERE method = 'tsne'")
    op.execute("ALTER TABLE projection DROP CONSTRAINT ck_projection_method")
    op.execute("ALTER TABLE projection ADD CONSTRAINT ck_projection_method CHECK (method IN ('umap','pca','trivial'))")
