"""One read-only copy of a text input, shared by the sandboxes it is handed to.

A text input the host wrote to a file for a sandbox (its `context`) is that sandbox's to pass on:
when sandbox code hands it, or a slice of it, to a host function (`rlm_query(prompt, context)`),
the driver sends a reference in its place (the input's name and a byte range of it), never the
text. The host resolves the reference against what it set in that sandbox, and only that: a name
the sandbox was not given as a shared file, or a range outside it, is refused
(`RefusedReference`). What it resolves to is a `SharedText`, a range of a file on the host; the
backend hard-links the file into the next sandbox's read-only variables directory, where its
driver reads the range. Whatever the depth, one copy of the text sits on disk.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .driver import TEXT_AT

# References in one callback frame; more is a protocol violation.
MAX_REFS = 256
# A host callback that takes SharedText values carries this attribute, true; every other one
# gets the text read from the file.
TAKES_SHARED = "takes_shared_text"
_CHUNK = 1 << 20


class RefusedReference(ValueError):
    """Sandbox code referred to data its sandbox was not given."""


@dataclass(frozen=True)
class SharedText:
    """Bytes `start` to `stop` of a UTF-8 file on the host, which nobody writes again."""

    path: Path
    start: int
    stop: int
    ascii: bool  # every byte of the file is ASCII: byte offsets are character offsets

    @classmethod
    def whole(cls, path: Path, ascii_text: bool) -> SharedText:
        """The value of a value file the host wrote (bulk.value_file's layout)."""
        return cls(path, TEXT_AT, path.stat().st_size - 1, ascii_text)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def part(self, start: int, stop: int) -> SharedText:
        """Bytes `start` to `stop` of this text, which must begin and end on characters."""
        if not 0 <= start <= stop <= self.size:
            raise RefusedReference(f"bytes {start}:{stop} are outside the input (0:{self.size})")
        part = SharedText(self.path, self.start + start, self.start + stop, self.ascii)
        if not self.ascii and not (part._at_character(part.start) and
                                   part._at_character(part.stop)):
            raise RefusedReference(f"bytes {start}:{stop} do not begin and end on characters")
        return part

    def _at_character(self, offset: int) -> bool:
        byte = self._bytes(offset, offset + 1)
        return not byte or byte[0] & 0xC0 != 0x80  # not a UTF-8 continuation byte

    def _bytes(self, start: int, stop: int) -> bytes:
        with open(self.path, "rb") as handle:
            return os.pread(handle.fileno(), stop - start, start)

    def read(self) -> str:
        """The whole text (for a host function that takes text, or a backend that cannot
        share files)."""
        return self._bytes(self.start, self.stop).decode("utf-8", "surrogatepass")

    def chars(self) -> int:
        """Its length in characters, read in chunks when it is not ASCII."""
        if self.ascii:
            return self.size
        decoder, count = codecs.getincrementaldecoder("utf-8")(), 0
        for at in range(self.start, self.stop, _CHUNK):
            count += len(decoder.decode(self._bytes(at, min(at + _CHUNK, self.stop))))
        return count + len(decoder.decode(b"", final=True))

    def ends(self, chars: int) -> tuple[str, str]:
        """Its first and last `chars` characters (all of it twice when it is that short)."""
        most = chars * 4  # bytes of `chars` UTF-8 characters at most
        head = self._bytes(self.start, min(self.stop, self.start + most))
        tail = self._bytes(max(self.start, self.stop - most), self.stop)
        return (head.decode("utf-8", errors="ignore")[:chars],
                tail.decode("utf-8", errors="ignore")[-chars:] if chars else "")


class FileSharing(Protocol):
    """What a backend that can share files between its sandboxes provides."""

    def host_path(self, inside: str) -> Path:
        """The host file behind a path the backend's `put_file` returned."""
        ...

    def link_file(self, source: Path, name: str) -> str:
        """`source` made readable, never writable, inside this sandbox: its path there."""
        ...


def well_formed(refs: Any) -> bool:
    """Each reference is [where, name, start, stop]: where a path of at most three keys
    (["args", 1, 0], ["kwargs", "context"]), start and stop byte offsets."""
    return isinstance(refs, list) and len(refs) <= MAX_REFS and all(
        isinstance(ref, list) and len(ref) == 4
        and isinstance(ref[0], list) and 2 <= len(ref[0]) <= 3
        and ref[0][0] in ("args", "kwargs")
        and all(isinstance(key, int | str) and not isinstance(key, bool) for key in ref[0][1:])
        and isinstance(ref[1], str)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in ref[2:])
        for ref in refs)


def resolve(args: list, kwargs: dict, refs: list, held: Mapping[str, SharedText],
            as_text: bool) -> None:
    """Put in place of each reference of a callback's arguments what it names, from `held`
    (the shared inputs the host set in the calling sandbox): a SharedText, or its text when
    `as_text`. Raises RefusedReference for anything else."""
    tree: dict[str, Any] = {"args": args, "kwargs": kwargs}
    for where, name, start, stop in refs:
        base = held.get(name)
        if base is None:
            raise RefusedReference(f"the sandbox was not given {name[:80]!r} as a shared input")
        shared = base.part(start, stop)
        container: Any = tree
        for key in where[:-1]:
            container = _step(container, key)
        last = where[-1]
        _step(container, last)  # it exists, and holds the driver's placeholder
        if container[last] is not None:
            raise RefusedReference(f"a reference points at an argument that has a value: {where}")
        container[last] = shared.read() if as_text else shared


def _step(container: Any, key: Any) -> Any:
    if isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container):
        return container[key]
    if isinstance(container, dict) and isinstance(key, str) and key in container:
        return container[key]
    raise RefusedReference(f"a reference points at no argument: {key!r}")
