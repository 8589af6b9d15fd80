"""The schema: SQLAlchemy 2 models, one definition for SQLite and PostgreSQL.

`migrations/versions` must create exactly this schema (a test compares the two on both dialects).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..status import TURN_STATUSES

DocumentKind = Literal["text", "markdown", "pdf", "json", "csv", "html"]
MemoryLabel = Literal["persona", "human", "scratchpad"]
DatasetSource = Literal["feedback", "jsonl", "bench"]
ProgramTarget = Literal["agent", "rlm"]
DOCUMENT_KINDS: tuple[str, ...] = get_args(DocumentKind)
DATASET_SOURCES: tuple[str, ...] = get_args(DatasetSource)
PROGRAM_TARGETS: tuple[str, ...] = get_args(ProgramTarget)
MEMORY_LABELS: tuple[str, ...] = get_args(MemoryLabel)

LOCAL_TENANT_ID = "local"
ALL_TENANTS = "*"  # the tenant row-level security lets see every tenant's rows
LOCAL_USER_ID = "local"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# PostgreSQL stores neither NUL in text or JSONB nor UTF-16 surrogates without their pair.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# What those characters look like in json.dumps's ASCII output (a literal backslash before
# "u0000" in the text matches too: that only costs the slow path).
_UNSTORABLE_IN_JSON = re.compile(r"\\u0000|\\ud[89a-f]", re.IGNORECASE)


def storable(value: Any) -> Any:
    """`value` (JSON-like) with each character PostgreSQL cannot store written as its escape
    (NUL as the six characters `\\u0000`): kept visible, never dropped. The same on SQLite, so
    both stores hold the same text."""
    # One pass in C finds that nearly every value has nothing to escape.
    if _UNSTORABLE_IN_JSON.search(json.dumps(value, default=str)) is None:
        return value
    return _escaped(value)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value
        return _UNSTORABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", value)
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no offset, so it stores naive UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQL NULL for None (not the JSON literal null); JSONB on PostgreSQL.
JSONColumn = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowids autoincrement


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={getattr(self, 'id', None)!r})"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    admin: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false(),
                                        doc="May change the server's settings (token auth).")


class ApiToken(Base):
    """A bearer token of a user; only the sha256 of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (sa.Index(None, "tenant_id", "updated_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    imported_from: Mapped[str | None] = mapped_column(
        sa.String(500), doc="The log it was imported from; such a session is read-only.")
    # The session's own models; null: the server's (settings).
    root_model: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    sub_model: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)


IN_FLIGHT = "status IN ('running', 'waiting')"


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        sa.UniqueConstraint("session_id", "index"),
        sa.CheckConstraint(_in("status", TURN_STATUSES), name="status"),
        # One turn in flight per session, whichever process starts it.
        sa.Index("ix_turns_one_in_flight", "session_id", unique=True,
                 sqlite_where=sa.text(IN_FLIGHT), postgresql_where=sa.text(IN_FLIGHT)),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(sa.Integer, doc="1 for a session's first turn")
    user_message: Mapped[str] = mapped_column(sa.Text)
    answer: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    error: Mapped[str | None] = mapped_column(sa.Text)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSONColumn)
    trace_id: Mapped[str | None] = mapped_column(sa.String(64))
    attachments: Mapped[list[dict[str, str]] | None] = mapped_column(
        JSONColumn, doc="The documents sent with the message: [{id, name}]")
    tags: Mapped[list[str] | None] = mapped_column(
        JSONColumn, doc="Labels its users gave the turn, to find it again (null: none).")
    programs: Mapped[dict[str, str | None] | None] = mapped_column(
        JSONColumn, doc="The program version each target ran: {agent, rlm} (null: baseline)")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(
        sa.String(120), doc="The process running the turn (`running` only; see leases.py)")
    lease_expires: Mapped[float | None] = mapped_column(
        sa.Double, doc="When the owner's lease runs out: seconds since the epoch on the "
        "database's clock")


class TurnCommand(Base):
    """A command to the process that runs a turn (cancel), and its answer."""

    __tablename__ = "turn_commands"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    turn_id: Mapped[str] = mapped_column(sa.ForeignKey("turns.id", ondelete="CASCADE"),
                                         index=True)
    owner: Mapped[str] = mapped_column(sa.String(120), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (sa.UniqueConstraint("turn_id", "seq"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    turn_id: Mapped[str] = mapped_column(sa.ForeignKey("turns.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(sa.Integer)
    type: Mapped[str] = mapped_column(sa.String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        sa.UniqueConstraint("session_id", "name"),
        sa.CheckConstraint(_in("kind", DOCUMENT_KINDS), name="kind"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(500))
    kind: Mapped[str] = mapped_column(sa.String(16))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    chars: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Detached: kept (past turns name it) but out of the agent's view until attached again.
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True,
                                                         default=None)

    # The encoding the text was converted from, when the upload was not UTF-8.
    encoding: Mapped[str | None] = mapped_column(sa.String(40), nullable=True, default=None)

    @property
    def attached(self) -> bool:
        return self.detached_at is None


class MemoryBlock(Base):
    __tablename__ = "memory_blocks"
    __table_args__ = (sa.UniqueConstraint("session_id", "label"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TenantLimits(Base):
    """A tenant's own budget limits, set by its admin: `limits` maps a limit's name to a value
    at or below the server's; a name left out means the server's."""

    __tablename__ = "tenant_limits"

    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSONColumn)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"TenantLimits(tenant_id={self.tenant_id!r})"


class Feedback(Base):
    """A person's thumbs up or down on a turn, with an optional comment and corrected answer."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    turn_id: Mapped[str] = mapped_column(sa.ForeignKey("turns.id", ondelete="CASCADE"),
                                         index=True)
    user_name: Mapped[str] = mapped_column(sa.String(200))
    thumbs_up: Mapped[bool] = mapped_column(sa.Boolean)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    corrected_answer: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dataset(Base):
    """Examples to optimise a program on: [{question, context, answer, ...}], per tenant."""

    __tablename__ = "datasets"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name"),
        sa.CheckConstraint(_in("source", DATASET_SOURCES), name="source"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    source: Mapped[str] = mapped_column(sa.String(16))
    benchmark: Mapped[str | None] = mapped_column(
        sa.String(32), doc="The benchmark whose official scorer scores it (bench datasets)")
    examples: Mapped[list[dict[str, Any]]] = mapped_column(JSONColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProgramVersion(Base):
    """The optimised instructions of one target's predictors, from one optimisation run."""

    __tablename__ = "program_versions"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "target", "number"),
        sa.CheckConstraint(_in("target", PROGRAM_TARGETS), name="target"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(sa.String(16))
    number: Mapped[int] = mapped_column(sa.Integer, doc="1 for a target's first version")
    dataset: Mapped[str] = mapped_column(sa.String(200))
    metric: Mapped[str] = mapped_column(sa.String(64))
    release: Mapped[str] = mapped_column(
        sa.String(64), doc="Fingerprint of the baseline program it was optimised from")
    baseline: Mapped[dict[str, str]] = mapped_column(JSONColumn)
    instructions: Mapped[dict[str, str]] = mapped_column(JSONColumn)
    score_before: Mapped[float] = mapped_column(sa.Float)
    score_after: Mapped[float] = mapped_column(sa.Float)
    stopped: Mapped[str | None] = mapped_column(
        sa.String(200), doc="Why the run stopped early (a budget limit), null when it finished")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Promotion(Base):
    """A tenant promoting a target's version (null: the baseline); the newest row is in force.
    `replaces` is the promotion it took over from, so a rollback goes back one step."""

    __tablename__ = "promotions"
    __table_args__ = (sa.Index(None, "tenant_id", "target"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(sa.String(16))
    version_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("program_versions.id", ondelete="CASCADE"))
    replaces: Mapped[int | None] = mapped_column(EventId)
    by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
