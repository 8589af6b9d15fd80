"""The call store: each model call's request messages and reply, kept once (`capture.py`).

Under `<data_dir>/calls/`:

    turns/<turn_id>/<call_id>.json   one record per call: model, params, tokens, cost, latency,
                                     finish reason, attempt, error, and the messages and reply,
                                     each short text inline and each long one as its chunks
    chunks/<sha[:2]>/<sha>.txt       pieces of long texts, once per sha256

A long text is cut into chunks at line ends chosen by their content, so the same document sent
in every iteration's prompt, or a prompt that grows by its history, is stored once plus what is
new. Each chunk is redacted (`redaction.py`) before it is hashed or written, and only once (a
chunk seen before is remembered by its text's hash): no key or bearer token reaches the disk,
and no cut falls inside one. The store never blocks a call: a call above the size cap, a store
full or unwritable is answered with why it was not kept, and the call is recorded without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..capture import CapturedCall
from ..redaction import redact
from .blobs import BlobStore
from .errors import NotFound

RECORD_VERSION = 1
INLINE_CHARS = 2048  # texts up to this long stay in the call's record
MIN_CHUNK = 4096  # a chunk ends at a chosen line end once it is this long...
MAX_CHUNK = 65536  # ...and at this many characters whatever the lines
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
REDACTED_CACHE_CHARS = 16 * 1024 * 1024  # redacted chunks remembered by their text's sha
MB = 1024 * 1024
# A full store first drops the chunks no kept call refers to (a deleted session's), at most once
# per COLLECT_EVERY_S, sparing those younger than COLLECT_GRACE_S (a call being written).
COLLECT_EVERY_S, COLLECT_GRACE_S = 60.0, 60.0


def chunks(text: str) -> list[str]:
    """`text` cut at line ends picked by the line's own content: the same leading text is cut
    the same way in every text that starts with it. No cut falls inside a credential the
    redaction would mask: never after a line ending in "Bearer", and a line longer than a
    chunk is cut at a space where it has one."""
    pieces, start, size = [], 0, 0
    for line in text.splitlines(keepends=True):
        size += len(line)
        while size >= MAX_CHUNK:
            cut = _long_cut(text, start)
            pieces.append(text[start:cut])
            start, size = cut, size - (cut - start)
        if size >= MIN_CHUNK and zlib.crc32(line.encode("utf-8", "replace")) % 8 == 0 \
                and not line.rstrip().lower().endswith("bearer"):
            pieces.append(text[start:start + size])
            start, size = start + size, 0
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _long_cut(text: str, start: int) -> int:
    end = start + MAX_CHUNK
    space = max(text.rfind(" ", end - 1024, end), text.rfind("\t", end - 1024, end))
    return space + 1 if space > start else end


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CallStore:
    def __init__(self, root: Path | str, *, max_call_mb: float = 16,
                 max_store_mb: float = 4096) -> None:
        self.root = Path(root)
        self.max_call_bytes = int(max_call_mb * MB)
        self.max_bytes = int(max_store_mb * MB)
        self.chunk_store = BlobStore(self.root / "chunks", durable=False)
        self._lock = threading.Lock()
        self._used: int | None = None
        self._redacted: OrderedDict[str, tuple[str, str]] = OrderedDict()  # sha -> sha, text
        self._cached = 0
        self._collected_at: float | None = None  # when a full store last collected (monotonic)

    # -- writing --------------------------------------------------------------------------
    def save(self, call: CapturedCall) -> str | None:
        """Keep `call`; None when kept, else why not. Never raises for the store's faults."""
        try:
            return self._save(call)
        except OSError as exc:
            return redact(f"the call store is unwritable: {type(exc).__name__}: {exc}")
        except UnicodeError:  # a lone surrogate (a reply or an imported log can hold one)
            return "the call holds text that is not valid Unicode"

    def _save(self, call: CapturedCall) -> str | None:
        if call.turn_id is None or not _ID.fullmatch(call.turn_id) \
                or not _ID.fullmatch(call.call_id):
            raise ValueError(f"bad turn or call id: {call.turn_id!r}, {call.call_id!r}")
        size = sum(len(m["content"]) for m in call.messages) + len(call.reply or "")
        if size > self.max_call_bytes:
            return (f"the call's messages and reply are {size / MB:.1f} MB, above "
                    f"FLEET_CAPTURE_MAX_CALL_MB ({self.max_call_bytes / MB:g} MB)")
        new: dict[str, str] = {}
        messages = [{"role": m["role"], **self._text(m["content"], new)} for m in call.messages]
        reply = None if call.reply is None else self._text(call.reply, new)
        record = {**call.as_dict(), "version": RECORD_VERSION, "messages": messages,
                  "reply": reply, "params": json.loads(redact(json.dumps(
                      call.params, default=str, ensure_ascii=False)))}
        if record["error"]:
            record["error"] = redact(record["error"])
        body = json.dumps(record, ensure_ascii=False)
        fresh = self._reserve(body, new)
        if isinstance(fresh, str) and self._may_collect():
            # Full: first drop what deleted sessions left (chunks no kept call refers to).
            self.collect_chunks(grace_s=COLLECT_GRACE_S)
            fresh = self._reserve(body, new)
        if isinstance(fresh, str):
            return fresh
        for sha, text in fresh.items():
            self.chunk_store.put(sha, text)
        folder = self.root / "turns" / call.turn_id
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / f"{call.call_id}.json", body)
        return None

    def _text(self, text: str, new: dict[str, str]) -> dict[str, Any]:
        """A text for the record: inline when short, else its redacted chunks' shas (the
        chunks to write added to `new`). Each chunk is redacted once: a chunk seen before
        (the same document in the next prompt) is not read again."""
        if len(text) <= INLINE_CHARS:
            return {"content": redact(text)}
        shas, chars = [], 0
        for piece in chunks(text):
            key = _sha(piece)
            with self._lock:
                known = self._redacted.get(key)
                if known is not None:
                    self._redacted.move_to_end(key)
            if known is None:
                clean = redact(piece)
                known = (_sha(clean), clean)
                with self._lock:
                    self._redacted[key] = known
                    self._cached += len(clean)
                    while self._cached > REDACTED_CACHE_CHARS:
                        _, (_, dropped) = self._redacted.popitem(last=False)
                        self._cached -= len(dropped)
            new[known[0]] = known[1]
            shas.append(known[0])
            chars += len(known[1])
        return {"chunks": shas, "chars": chars}

    def _reserve(self, body: str, new: dict[str, str]) -> dict[str, str] | str:
        """Count the record and the chunks not yet stored against the store's size: those
        chunks, or why they do not fit."""
        with self._lock:
            fresh = {sha: text for sha, text in new.items() if not self._touch(sha)}
            adding = len(body) + sum(len(t.encode("utf-8", "surrogatepass"))
                                     for t in fresh.values())
            used = self._used_bytes()
            if used + adding > self.max_bytes:
                return (f"the call store is full ({used / MB:.1f} MB of "
                        f"FLEET_CAPTURE_MAX_STORE_MB {self.max_bytes / MB:g} MB)")
            self._used = used + adding  # counted before writing: a failed write only wastes
        return fresh

    def _may_collect(self) -> bool:
        """At most one collection per COLLECT_EVERY_S when full (each reads every record)."""
        with self._lock:
            now = time.monotonic()
            if self._collected_at is not None and now - self._collected_at < COLLECT_EVERY_S:
                return False
            self._collected_at = now
            return True

    def _touch(self, sha: str) -> bool:
        """Whether the chunk is stored; if so it is marked used now, so `collect_chunks`
        leaves it to the call about to refer to it."""
        try:
            os.utime(self.chunk_store.path(sha))
        except FileNotFoundError:
            return False
        return True

    def _used_bytes(self) -> int:
        if self._used is None:
            self._used = sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file()) \
                if self.root.is_dir() else 0
        return self._used

    # -- reading and removing -------------------------------------------------------------
    def read(self, turn_id: str, call_id: str) -> dict[str, Any] | None:
        """The call's record with its texts whole, or None when it was not kept. A chunk
        removed since reads as a note in its place."""
        if not (_ID.fullmatch(turn_id) and _ID.fullmatch(call_id)):
            return None
        try:
            record = json.loads((self.root / "turns" / turn_id / f"{call_id}.json").read_text(
                encoding="utf-8"))
        except FileNotFoundError:
            return None
        record["messages"] = [{"role": m["role"], "content": self._whole(m)}
                              for m in record["messages"]]
        if record["reply"] is not None:
            record["reply"] = self._whole(record["reply"])
        return record

    def _whole(self, part: dict[str, Any]) -> str:
        if "content" in part:
            return part["content"]
        texts = []
        for sha in part["chunks"]:
            try:
                texts.append(self.chunk_store.read(sha))
            except NotFound:
                texts.append(f"[a part of this text is no longer stored: {sha}]")
        return "".join(texts)

    def turn_calls(self, turn_id: str) -> list[str]:
        """The ids of the turn's kept calls."""
        folder = self.root / "turns" / turn_id
        if not _ID.fullmatch(turn_id) or not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json"))

    def collect_chunks(self, grace_s: float = 3600.0) -> tuple[int, int]:
        """Remove the chunks no kept call refers to (a deleted session's calls leave theirs,
        which others may share); returns how many and their bytes. A chunk younger than
        `grace_s` stays: its call's record may be being written now."""
        referenced: set[str] = set()
        for path in (self.root / "turns").glob("*/*.json"):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed meanwhile, or half a file from another process
            parts = [*record.get("messages", []), record.get("reply") or {}]
            referenced.update(sha for part in parts for sha in part.get("chunks", ()))
        removed = freed = 0
        now = time.time()
        for sha in self.chunk_store.shas() - referenced:
            path = self.chunk_store.path(sha)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if now - stat.st_mtime >= grace_s and self.chunk_store.remove(sha):
                removed, freed = removed + 1, freed + stat.st_size
        with self._lock:
            self._used = None
            self._redacted.clear()  # a remembered chunk may be gone
            self._cached = 0
        return removed, freed

    def remove_turns(self, turn_ids: list[str]) -> None:
        """Forget these turns' calls (their chunks stay: other calls may share them)."""
        for turn_id in turn_ids:
            if _ID.fullmatch(turn_id):
                shutil.rmtree(self.root / "turns" / turn_id, ignore_errors=True)
        with self._lock:
            self._used = None


def _write_atomic(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
