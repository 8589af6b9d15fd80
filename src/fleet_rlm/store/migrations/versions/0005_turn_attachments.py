"""Turn attachments: the documents a message was sent with, as [{id, name}] (null: none).

Turns recorded before named their attachments only in a note after the text
("\n\n(Attached documents: a.txt, b.txt)"): where every name in it is a document of the turn's
session, the turn gets them as attachments; otherwise (a document deleted since, a name with a
comma) it keeps none and its text shows the note, as it did.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


NOTE = "\n\n(Attached documents: "


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("attachments", JSON, nullable=True))
    turns = sa.table("turns", sa.column("id", sa.String), sa.column("session_id", sa.String),
                     sa.column("user_message", sa.Text), sa.column("attachments", JSON))
    documents = sa.table("documents", sa.column("id", sa.String),
                         sa.column("session_id", sa.String), sa.column("name", sa.String))
    bind = op.get_bind()
    noted = bind.execute(sa.select(turns.c.id, turns.c.session_id, turns.c.user_message)
                         .where(turns.c.user_message.contains(NOTE.strip()))).all()
    for turn_id, session_id, message in noted:
        _, sep, tail = message.rpartition(NOTE)
        if not sep or not tail.endswith(")"):
            continue
        names = list(dict.fromkeys(tail[:-1].split(", ")))
        ids = dict(bind.execute(sa.select(documents.c.name, documents.c.id).where(
            documents.c.session_id == session_id, documents.c.name.in_(names))).all())
        if all(name in ids for name in names):
            bind.execute(turns.update().where(turns.c.id == turn_id).values(
                attachments=[{"id": ids[name], "name": name} for name in names]))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("attachments")
