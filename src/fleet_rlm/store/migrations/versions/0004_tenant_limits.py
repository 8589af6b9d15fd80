"""Tenant limits: each tenant's own budget limits, at or below the server's; on PostgreSQL under
the same forced row-level security as the other tenant tables (a tenant sees only its own row,
`*` every row).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TENANT = "current_setting('fleet.tenant_id', true)"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tenant_limits",
        sa.Column("tenant_id", sa.String(32), nullable=False),
        sa.Column("limits", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_tenant_limits_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_limits"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tenant_limits ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE tenant_limits FORCE ROW LEVEL SECURITY")
        op.execute("CREATE POLICY tenant_isolation ON tenant_limits "
                   f"USING ({TENANT} IN (tenant_id, '*'))")


def downgrade() -> None:
    op.drop_table("tenant_limits")  # its policy goes with it
