"""Turn tags and imported sessions: a turn's `tags`, labels its users give it to find it again
(a JSON list; null: none), and a session's `imported_from`, the log it was read from (such a
session is read-only; null: a session of this workspace).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("tags", JSON, nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("imported_from", sa.String(500), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite it copies the table and drops the old one, and with foreign
    # keys on, dropping `sessions` or `turns` deletes their children. SQLite (3.35+) drops a
    # plain column in place.
    for table, column in (("sessions", "imported_from"), ("turns", "tags")):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        else:
            op.drop_column(table, column)
