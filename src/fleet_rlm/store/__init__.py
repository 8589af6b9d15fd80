"""Persistence: one schema for SQLite and PostgreSQL, Alembic migrations, repositories per
aggregate, and the event recorder. Written by consumers of the event stream, never the engine."""

from .blobs import BlobStore
from .db import Store, database_url
from .errors import Conflict, NotFound
from .models import (
    DOCUMENT_KINDS,
    LOCAL_TENANT_ID,
    LOCAL_USER_ID,
    MEMORY_LABELS,
    TURN_STATUSES,
    Dataset,
    Document,
    Event,
    Feedback,
    MemoryBlock,
    ProgramVersion,
    Promotion,
    Session,
    Tenant,
    Turn,
    User,
)
from .recorder import EventRecorder

__all__ = [
    "Dataset",
    "Feedback",
    "ProgramVersion",
    "Promotion",
    "DOCUMENT_KINDS",
    "LOCAL_TENANT_ID",
    "LOCAL_USER_ID",
    "MEMORY_LABELS",
    "TURN_STATUSES",
    "BlobStore",
    "Conflict",
    "Document",
    "Event",
    "EventRecorder",
    "MemoryBlock",
    "NotFound",
    "Session",
    "Store",
    "Tenant",
    "Turn",
    "User",
    "database_url",
]
