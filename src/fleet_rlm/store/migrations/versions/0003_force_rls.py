"""Row-level security binds the tables' owner too (FORCE ROW LEVEL SECURITY), on PostgreSQL.

Without it the role that owns the tables (the one that runs migrations) bypasses every policy,
so a server connected as that role kept tenants apart by its own checks alone. Superusers and
roles with BYPASSRLS still bypass policies; the server refuses to start as one in token mode.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("sessions", "turns", "documents", "memory_blocks", "events")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
