"""The store's two errors: a missing row (NotFound) and a name already taken (Conflict)."""

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
