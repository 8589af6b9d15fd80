"""Turn leases and commands: many processes on one store.

A running turn records the process that owns it (`owner`) and when that process's lease runs out
(`lease_expires`, on the database's clock); a turn whose lease ran out is closed as interrupted
by whichever process notices first. `turn_commands` carries a cancel from any process to the
owner, and its answer back. A partial unique index keeps one turn in flight per session across
processes (turns left in flight beside a newer one are closed as interrupted first).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

IN_FLIGHT = "status IN ('running', 'waiting')"
INTERRUPTED = "the server stopped while this turn was running"


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("owner", sa.String(120), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.Double(), nullable=True))
    # Only the newest turn of a session may stay in flight.
    op.execute(
        "UPDATE turns SET status = 'interrupted', error = "
        f"'{INTERRUPTED}', pending = NULL WHERE {IN_FLIGHT} AND EXISTS "
        "(SELECT 1 FROM turns newer WHERE newer.session_id = turns.session_id "
        "AND newer.status IN ('running', 'waiting') AND newer.\"index\" > turns.\"index\")")
    op.create_index("ix_turns_one_in_flight", "turns", ["session_id"], unique=True,
                    sqlite_where=sa.text(IN_FLIGHT), postgresql_where=sa.text(IN_FLIGHT))
    op.create_table(
        "turn_commands",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("turn_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE",
                                name="fk_turn_commands_turn_id_turns"),
        sa.PrimaryKeyConstraint("id", name="pk_turn_commands"),
    )
    op.create_index("ix_turn_commands_turn_id", "turn_commands", ["turn_id"])
    op.create_index("ix_turn_commands_owner", "turn_commands", ["owner"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE turn_commands ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE turn_commands FORCE ROW LEVEL SECURITY")
        op.execute("CREATE POLICY tenant_isolation ON turn_commands USING "
                   "(EXISTS (SELECT 1 FROM turns t WHERE t.id = turn_commands.turn_id))")


def downgrade() -> None:
    op.drop_table("turn_commands")
    op.drop_index("ix_turns_one_in_flight", "turns")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("lease_expires")
        batch.drop_column("owner")
