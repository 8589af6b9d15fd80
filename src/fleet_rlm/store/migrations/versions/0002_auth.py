"""Auth: API tokens, an admin flag on users; on PostgreSQL, row-level security by tenant.

Row-level security is the second wall behind the server's own tenant checks. Each policy reads
`current_setting('fleet.tenant_id', true)`, which the server sets per transaction: a tenant id
sees that tenant's rows, `*` (the server's own background work) sees all, and a connection that
set nothing sees none. Turns, documents and memory blocks are visible when their session is;
events when their turn is.

RLS is enabled, not forced: the tables' owner (the role that runs migrations) and superusers
bypass it, so it binds a server that connects as a role that does not own the tables.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT = "current_setting('fleet.tenant_id', true)"
POLICIES = {
    "sessions": f"{TENANT} IN (tenant_id, '*')",
    "turns": "EXISTS (SELECT 1 FROM sessions s WHERE s.id = turns.session_id)",
    "documents": "EXISTS (SELECT 1 FROM sessions s WHERE s.id = documents.session_id)",
    "memory_blocks": "EXISTS (SELECT 1 FROM sessions s WHERE s.id = memory_blocks.session_id)",
    "events": "EXISTS (SELECT 1 FROM turns t WHERE t.id = events.turn_id)",
}


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))
    op.execute("UPDATE users SET admin = true WHERE id = 'local'")
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_api_tokens_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    if op.get_bind().dialect.name == "postgresql":
        for table, predicate in POLICIES.items():
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({predicate})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in POLICIES:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_table("api_tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("admin")
