"""Initial schema: tenants, users, sessions, turns, events, documents, memory blocks; the local
tenant and user.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.String(32)


def _id() -> sa.Column:
    return sa.Column("id", ID, nullable=False)


def _parent(table: str, column: str, parent: str) -> tuple[sa.Column, sa.ForeignKeyConstraint]:
    """A required reference to `parent`, deleted with it. Names follow the models' convention."""
    return sa.Column(column, ID, nullable=False), sa.ForeignKeyConstraint(
        [column], [f"{parent}.id"], ondelete="CASCADE", name=f"fk_{table}_{column}_{parent}")


def _table(name: str, *items: sa.Column | sa.Constraint) -> None:
    op.create_table(name, *items, sa.PrimaryKeyConstraint("id", name=f"pk_{name}"))


def upgrade() -> None:
    _table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    _table(
        "users",
        _id(),
        *_parent("users", "tenant_id", "tenants"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_users_tenant_id_name"),
    )
    _table(
        "sessions",
        _id(),
        *_parent("sessions", "tenant_id", "tenants"),
        *_parent("sessions", "user_id", "users"),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index("ix_sessions_tenant_id_updated_at", "sessions", ["tenant_id", "updated_at"])
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    _table(
        "turns",
        _id(),
        *_parent("turns", "session_id", "sessions"),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("user_message", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("usage", JSON, nullable=True),
        sa.Column("pending", JSON, nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.UniqueConstraint("session_id", "index", name="uq_turns_session_id_index"),
        sa.CheckConstraint(
            "status IN ('running', 'waiting', 'done', 'cancelled', 'failed', 'interrupted')",
            name="ck_turns_status",
        ),
    )
    op.create_index("ix_turns_status", "turns", ["status"])
    _table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        *_parent("events", "turn_id", "turns"),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("turn_id", "seq", name="uq_events_turn_id_seq"),
    )
    _table(
        "documents",
        _id(),
        *_parent("documents", "session_id", "sessions"),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chars", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("session_id", "name", name="uq_documents_session_id_name"),
        sa.CheckConstraint("kind IN ('text', 'markdown', 'pdf', 'json', 'csv', 'html')",
                           name="ck_documents_kind"),
    )
    op.create_index("ix_documents_sha256", "documents", ["sha256"])
    _table(
        "memory_blocks",
        _id(),
        *_parent("memory_blocks", "session_id", "sessions"),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("session_id", "label", name="uq_memory_blocks_session_id_label"),
    )

    now = datetime.now(UTC)
    tenants = sa.table("tenants", sa.column("id"), sa.column("name"),
                       sa.column("created_at", TIMESTAMP))
    users = sa.table("users", sa.column("id"), sa.column("tenant_id"), sa.column("name"),
                     sa.column("created_at", TIMESTAMP))
    op.bulk_insert(tenants, [{"id": "local", "name": "local", "created_at": now}])
    op.bulk_insert(users, [{"id": "local", "tenant_id": "local", "name": "local",
                            "created_at": now}])


def downgrade() -> None:
    for table in ("memory_blocks", "documents", "events", "turns", "sessions", "users", "tenants"):
        op.drop_table(table)
