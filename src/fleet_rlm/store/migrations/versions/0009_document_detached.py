"""Documents can be detached: a detached document stays stored (past turns still name it) but the
agent no longer lists or reads it until it is attached again. A document converted from a legacy
encoding (Windows-1252, ...) names it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("encoding", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("encoding")
        batch.drop_column("detached_at")
