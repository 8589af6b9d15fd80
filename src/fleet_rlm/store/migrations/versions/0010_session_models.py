"""Session models: a session's own root and sub model (null: the server's).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on SQLite too (3.35+ drops columns): a batch copy would drop and recreate
# `sessions`, and with foreign keys on its turns and documents would go with it.
def upgrade() -> None:
    with op.batch_alter_table("sessions", recreate="never") as batch:
        batch.add_column(sa.Column("root_model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("sub_model", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions", recreate="never") as batch:
        batch.drop_column("sub_model")
        batch.drop_column("root_model")
