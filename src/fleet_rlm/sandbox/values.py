"""Host values as the sandbox receives them: tagged JSON that keeps their Python type.

JSON holds None, bools, numbers, strings, lists and dicts with string keys. Every other value the
sandbox's standard library can hold crosses as an object with the key `TAG` (driver.revive turns
it back): tuples, sets, frozensets, bytes, dates and times, decimals, UUIDs, complex numbers,
named tuples, and dicts whose keys are not all strings (or that hold the key `TAG` itself); a
long string inside a larger value may cross as a file the sandbox reads (a "file" tag).
A pydantic model or a dataclass crosses as a record: its data (pydantic's own python-mode dump;
a dataclass's fields), which the sandbox holds as a dict subclass named after the type. An enum
crosses as its value. Anything else crosses as pydantic's JSON form of it when it has one (a
path as text, ...), and otherwise cannot cross (`Unsendable`).

Only the host encodes this way; values from the sandbox are plain JSON (driver.plain) and are
never revived on the host.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .driver import TAG

_SCALARS = (str, int, float, bool, type(None))
MAX_DEPTH = 200


class Unsendable(TypeError):
    """A value the sandbox cannot hold."""


def to_wire(value: Any, spill: Callable[[str], str] | None = None,
            spill_at: int = 0) -> tuple[Any, bool]:
    """(JSON-ready form of `value`, whether it holds tags). Plain JSON values come back as the
    very same objects, so the common case costs one walk and no copy. With `spill`, each
    string inside `value` longer than `spill_at` goes to a file of its own (`spill` writes
    it and returns the sandbox's path of it) and crosses as a "file" tag naming it: the
    documents of a large context are written once each, never serialised into one JSON."""
    encoder = _Encoder(spill, spill_at)
    try:
        return encoder.encode(value), encoder.tagged
    except RecursionError:
        raise Unsendable(f"the value is nested more than {MAX_DEPTH} levels deep (or holds "
                         "itself)") from None


def type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


class _Encoder:
    def __init__(self, spill: Callable[[str], str] | None = None, spill_at: int = 0) -> None:
        self.tagged = False
        self.depth = 0
        self.spill, self.spill_at = spill, spill_at

    def tag(self, kind: str, value: Any, **extra: Any) -> dict:
        self.tagged = True
        return {TAG: kind, **extra, "v": value}

    def encode(self, value: Any) -> Any:
        if isinstance(value, _SCALARS) and not isinstance(value, enum.Enum):
            if self.spill is not None and type(value) is str and len(value) > self.spill_at:
                # An ASCII one becomes a str over the file's pages (driver.mapped_ascii).
                return self.tag("file", self.spill(value),
                                **({"ascii": True} if value.isascii() else {}))
            return value
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsendable(f"the value is nested more than {MAX_DEPTH} levels deep (or holds "
                             "itself)")
        try:
            return self._encode(value)
        finally:
            self.depth -= 1

    def _encode(self, value: Any) -> Any:
        if type(value) is list:
            items = [self.encode(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            return self._dict(value)
        if isinstance(value, enum.Enum):
            return self.encode(value.value)
        if isinstance(value, BaseModel):
            return self.tag("record", self._fields(value.model_dump(mode="python")),
                            type=type_name(value))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return self.tag("record", self._fields(fields), type=type_name(value))
        if isinstance(value, tuple):
            items = [self.encode(item) for item in value]
            if hasattr(value, "_fields") and hasattr(value, "_asdict"):
                return self.tag("namedtuple", items, name=type(value).__name__,
                                fields=list(value._fields))
            return self.tag("tuple", items)
        if isinstance(value, list):  # a list subclass: its items, as a list
            return [self.encode(item) for item in value]
        if isinstance(value, (set, frozenset)):
            items = [self.encode(item) for item in value]
            with contextlib.suppress(TypeError):  # a stable order, so an unchanged set is
                items.sort()                         # recognised as unchanged
            return self.tag("frozenset" if isinstance(value, frozenset) else "set", items)
        if isinstance(value, (bytes, bytearray)):
            return self.tag(type(value).__name__ if type(value) in (bytes, bytearray)
                            else "bytes", base64.b64encode(value).decode("ascii"))
        if isinstance(value, datetime.datetime):
            return self.tag("datetime", value.isoformat())
        if isinstance(value, datetime.date):
            return self.tag("date", value.isoformat())
        if isinstance(value, datetime.time):
            return self.tag("time", value.isoformat())
        if isinstance(value, datetime.timedelta):
            return self.tag("timedelta", [value.days, value.seconds, value.microseconds])
        if isinstance(value, decimal.Decimal):
            return self.tag("decimal", str(value))
        if isinstance(value, uuid.UUID):
            return self.tag("uuid", str(value))
        if isinstance(value, complex):
            return self.tag("complex", [value.real, value.imag])
        try:
            converted = to_jsonable_python(value)
        except (PydanticSerializationError, TypeError, ValueError):
            raise Unsendable(f"the sandbox cannot hold a value of type {type(value).__name__} "
                             "(plain data, sets, tuples, bytes, dates, pydantic models and "
                             "dataclasses can cross)") from None
        return self.encode(converted)

    def _dict(self, value: dict) -> Any:
        if all(type(key) is str for key in value) and TAG not in value:
            items = {key: self.encode(item) for key, item in value.items()}
            same = all(items[key] is item for key, item in value.items())
            return value if same and type(value) is dict else items
        return self.tag("dict", [[self.encode(key), self.encode(item)]
                                 for key, item in value.items()])

    def _fields(self, fields: dict) -> Any:
        encoded = self._dict(fields)
        if isinstance(encoded, dict) and TAG in encoded:  # a field named like the tag
            raise Unsendable(f"a field may not be named {TAG!r}")
        return encoded
