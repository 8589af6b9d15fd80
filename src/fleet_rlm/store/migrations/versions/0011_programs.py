"""Optimised programs: feedback on turns, datasets, program versions and their promotions, each
per tenant (row-level security on PostgreSQL like the other tenant tables); the program version
each turn ran (`turns.programs`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TENANT = "current_setting('fleet.tenant_id', true)"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(32)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("feedback", "datasets", "program_versions", "promotions")


def _tenant(table: str) -> tuple[sa.Column, sa.ForeignKeyConstraint]:
    return sa.Column("tenant_id", ID, nullable=False), sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name=f"fk_{table}_tenant_id_tenants")


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("programs", JSON, nullable=True))
    op.create_table(
        "feedback",
        sa.Column("id", ID, nullable=False),
        *_tenant("feedback"),
        sa.Column("turn_id", ID, nullable=False),
        sa.Column("user_name", sa.String(200), nullable=False),
        sa.Column("thumbs_up", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("corrected_answer", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["turn_id"], ["turns.id"], ondelete="CASCADE",
                                name="fk_feedback_turn_id_turns"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_turn_id", "feedback", ["turn_id"])
    op.create_table(
        "datasets",
        sa.Column("id", ID, nullable=False),
        *_tenant("datasets"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("benchmark", sa.String(32), nullable=True),
        sa.Column("examples", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("source IN ('feedback', 'jsonl', 'bench')",
                           name="ck_datasets_source"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_datasets_tenant_id_name"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    )
    op.create_table(
        "program_versions",
        sa.Column("id", ID, nullable=False),
        *_tenant("program_versions"),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("release", sa.String(64), nullable=False),
        sa.Column("baseline", JSON, nullable=False),
        sa.Column("instructions", JSON, nullable=False),
        sa.Column("score_before", sa.Float(), nullable=False),
        sa.Column("score_after", sa.Float(), nullable=False),
        sa.Column("stopped", sa.String(200), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("target IN ('agent', 'rlm')", name="ck_program_versions_target"),
        sa.UniqueConstraint("tenant_id", "target", "number",
                            name="uq_program_versions_tenant_id_target_number"),
        sa.PrimaryKeyConstraint("id", name="pk_program_versions"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", BIGID, nullable=False, autoincrement=True),
        *_tenant("promotions"),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("version_id", ID, nullable=True),
        sa.Column("replaces", BIGID, nullable=True),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["program_versions.id"], ondelete="CASCADE",
                                name="fk_promotions_version_id_program_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
    )
    op.create_index("ix_promotions_tenant_id_target", "promotions", ["tenant_id", "target"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} "
                       f"USING ({TENANT} IN (tenant_id, '*'))")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # its policy goes with it
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("programs")
