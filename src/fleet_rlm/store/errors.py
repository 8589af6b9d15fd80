"""The store's errors: a missing row (NotFound), a name already taken (Conflict), a schema not
yet migrated (SchemaNotReady)."""

from __future__ import annotations


class NotFound(LookupError):
    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"no {kind} with id {id!r}")
        self.kind = kind
        self.id = id


class Conflict(ValueError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"a {kind} named {key!r} already exists")
        self.kind = kind
        self.key = key


class SchemaNotReady(RuntimeError):
    """The database's schema is not the one this version needs (PostgreSQL is migrated only by
    `fleet db upgrade`, never by the server)."""

    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(
            f"the database schema is at {current or 'nothing (an empty database)'}, this version "
            f"needs revision {head}: run `fleet db upgrade --url ADMIN_URL` as the role that "
            "owns the tables, then start again")
        self.current = current
        self.head = head
