"""Text stored once per sha256 under `<root>/<sha[:2]>/<sha>.txt`: extracted documents, and the
call store's chunks (`calls.py`)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from .errors import NotFound

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path | str, *, durable: bool = True) -> None:
        """`durable`: each file reaches the disk before `put` returns (documents); the call
        store's chunks skip that wait (a chunk lost in a power cut reads as missing)."""
        self.root = Path(root)
        self.durable = durable

    def path(self, sha: str) -> Path:
        if not _SHA256.fullmatch(sha):  # the name becomes a path: never let it escape root
            raise ValueError(f"not a lowercase hex sha256: {sha!r}")
        return self.root / sha[:2] / f"{sha}.txt"

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, sha: str, text: str) -> Path:
        """Write the text for `sha` unless already stored; readers never see a partial file."""
        target = self.path(sha)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def read(self, sha: str, start: int = 0, length: int | None = None) -> str:
        """Characters [start, start+length) of the text; the whole rest when length is None."""
        if start < 0 or (length is not None and length < 0):
            raise ValueError(f"start and length must be >= 0, got {start}, {length}")
        try:
            f = self.path(sha).open(encoding="utf-8", newline="")
        except FileNotFoundError:
            raise NotFound("blob", sha) from None
        with f:
            skip = start
            while skip > 0 and (got := len(f.read(min(skip, _CHUNK)))):
                skip -= got
            return f.read() if length is None else f.read(length)

    def remove(self, sha: str) -> bool:
        path = self.path(sha)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # other blobs share the directory
            path.parent.rmdir()
        return True

    def shas(self) -> set[str]:
        return {p.stem for p in self.root.glob("??/*.txt") if _SHA256.fullmatch(p.stem)}