"""reference_image: version column (stale caption/alt-text edits), who changed it last, import note

Revision ID: 0008
Revises: 0007

Captions and alt text are edited in a form that can sit open for minutes; two editors saving
the same image must not silently overwrite each other. `version` is checked and bumped by
core.references.update_reference_text (the same optimistic locking characters have), and
updated_by / updated_at let the refusal name who saved first. `import_note` keeps what the
upload did on purpose to the file (e.g. only the first frame of an animation was kept).
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reference_image", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("reference_image", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reference_image", sa.Column("updated_by", sa.String(120), nullable=False, server_default=""))
    op.add_column("reference_image", sa.Column("import_note", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    for column in ("import_note", "updated_by", "updated_at", "version"):
        op.drop_column("reference_image", column)
