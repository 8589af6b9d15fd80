"""Documents are turned into text in a process of their own, within caps.

A few kilobytes of PDF can unpack into gigabytes or take minutes of CPU to lay out (a
decompression bomb), and any parser may have bugs an attacker's file reaches. So `documents.extract`
never runs in the server: `extract_bounded` starts `python -m fleet_rlm.extraction` with no
environment (no keys to read), caps its CPU time, address space and file writes with rlimits,
and reads back at most the text cap. (It keeps the server's priority: at a lower one, uploads
took five times as long on a busy machine.) The bytes go in on stdin; the answer comes back as
one JSON line (the document's fields or a `DocumentError`'s) followed by the text in
UTF-8, never as a pickle, so a child that went wrong can send nothing but data. A cap that is hit
is a `DocumentError` with reason `over_limit` naming the cap and its setting; the server answers
422. `Extractor` adds a per-tenant limit on extractions at once, so one tenant's uploads wait for
each other, not another tenant's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, BinaryIO

from .documents import DocumentError, ExtractedDocument, clean_name, extract

MB = 1024 * 1024
CHUNK = MB
# Past the CPU cap a process is killed at the hard limit (one second on). Wall time is only a
# backstop for a child that stops using CPU without ending: on a loaded machine a child can take
# many times its CPU time, so the backstop is loose.
WALL_PER_CPU, WALL_EXTRA_S = 10, 60
HEADER_BYTES = 64 * 1024

if TYPE_CHECKING:
    from .config import Settings


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int
    cpu_s: int
    memory_mb: int
    max_text_mb: int

    @classmethod
    def of(cls, settings: Settings) -> ExtractionLimits:
        return cls(settings.max_document_mb * MB, settings.extract_cpu_s,
                   settings.extract_memory_mb, settings.extract_max_text_mb)


def _over(name: str, what: str) -> DocumentError:
    return DocumentError(f"{name}: {what}", "over_limit", name=name)


class Extractor:
    """Extractions at most `concurrency` at a time per tenant."""

    def __init__(self) -> None:
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def extract(self, tenant_id: str, name: str, source: bytes | BinaryIO,
                      limits: ExtractionLimits, concurrency: int) -> ExtractedDocument:
        slots = self._slots.setdefault(tenant_id, asyncio.Semaphore(concurrency))
        async with slots:
            return await extract_bounded(name, source, limits)


async def extract_bounded(name: str, source: bytes | BinaryIO, limits: ExtractionLimits
                          ) -> ExtractedDocument:
    """`documents.extract(name, data)` in a child process within `limits`."""
    name = clean_name(name)  # a bad name is refused here, before a process starts
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env={},
        limit=HEADER_BYTES)
    wall = limits.cpu_s * WALL_PER_CPU + WALL_EXTRA_S
    try:
        async with asyncio.timeout(wall):
            return await _exchange(process, name, source, limits)
    except TimeoutError:
        raise _over(name, f"reading it took longer than {wall} s; it was stopped") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _exchange(process: asyncio.subprocess.Process, name: str, source: bytes | BinaryIO,
                    limits: ExtractionLimits) -> ExtractedDocument:
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps({"name": name, **asdict(limits)}).encode() + b"\n")
        if isinstance(source, bytes):
            process.stdin.write(source)
        else:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                process.stdin.write(chunk)
                await process.stdin.drain()
        await process.stdin.drain()
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child stopped reading: its exit status says why
    try:
        line = await process.stdout.readline()
        if not line.endswith(b"\n"):
            raise _crashed(name, await process.wait(), limits)
        header = json.loads(line)
        if "error" in header:
            raise DocumentError(header["error"], header["reason"], name=header["name"])
        size = header.pop("text_bytes")
        if size > limits.max_text_mb * MB:
            raise _over(name, f"its text is over {limits.max_text_mb} MB "
                        "(FLEET_EXTRACT_MAX_TEXT_MB)")
        text = (await process.stdout.readexactly(size)).decode()
        return ExtractedDocument(**header, text=text, chars=len(text))
    except DocumentError:
        raise
    except (ValueError, KeyError, TypeError, EOFError):  # a reply that is not ours
        raise DocumentError(f"{name} could not be read: the reader's reply was malformed",
                            "corrupt", name=name) from None


def _crashed(name: str, status: int, limits: ExtractionLimits) -> DocumentError:
    """A child that ended without an answer: the CPU limit's signals, or a failure so deep that
    Python could not report it (memory it could not even raise MemoryError in, a crash)."""
    if status in (-signal.SIGXCPU, -signal.SIGKILL):
        return _over(name, f"reading it needs more than {limits.cpu_s} s of CPU "
                     "(FLEET_EXTRACT_CPU_S)")
    return _over(name, f"reading it failed (exit status {status}); it may need more than "
                 f"{limits.memory_mb} MB of memory (FLEET_EXTRACT_MEMORY_MB)")


# --- the child --------------------------------------------------------------------------------


def _confine(limits: dict) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    memory = limits["memory_mb"] * MB
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it writes no files


def _child() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    request = json.loads(stdin.readline(HEADER_BYTES))
    _confine(request)
    name = request["name"]
    try:
        document = extract(name, stdin.read(request["max_bytes"] + 1), request["max_bytes"])
        text = document.text.encode("utf-8", "replace")
        if len(text) > request["max_text_mb"] * MB:
            raise _over(document.name, f"its text is over {request['max_text_mb']} MB "
                        "(FLEET_EXTRACT_MAX_TEXT_MB)")
        header = document.model_dump(exclude={"text", "chars"}) | {"text_bytes": len(text)}
    except MemoryError:
        text = b""
        header = {"error": f"{name}: reading it needs more than {request['memory_mb']} MB of "
                  "memory (FLEET_EXTRACT_MEMORY_MB)", "reason": "over_limit", "name": name}
    except DocumentError as exc:
        text = b""
        header = {"error": exc.message, "reason": exc.reason, "name": exc.name}
    except Exception as exc:  # noqa: BLE001 - a parser's own failure on this input
        text = b""
        header = {"error": f"{name} could not be read ({type(exc).__name__}: {exc})"[:1000],
                  "reason": "corrupt", "name": name}
    stdout.write(json.dumps(header).encode() + b"\n")
    stdout.write(text)
    stdout.flush()


if __name__ == "__main__":
    _child()
