"""The Sandbox seam and the host side of the driver protocol, shared by every backend."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol

from .bulk import Outbox, RefusedFile, merge, text_chunks, value_file
from .driver import (
    ARTIFACTS,
    MAX_ARTIFACTS,
    MAX_NAMES,
    PIN_S,
    REPLIES,
    FrameTooLarge,
    Lines,
    current_cpu,
    decode,
    encode,
)
from .shared import TAKES_SHARED, FileSharing, SharedText, resolve, well_formed
from .values import Unsendable, to_wire

log = logging.getLogger(__name__)

DRIVER_SOURCE = Path(__file__).with_name("driver.py")
# Values larger than this cross as files rather than inline JSON lines.
INLINE_LIMIT = 64 * 1024
# Host callbacks a sandbox may have waiting at once; more is a protocol violation.
MAX_QUEUED_CALLBACKS = 256

Callback = Callable[..., Any]
# Values no cell can change in place: an unchanged one (the same object) is not looked at again.
IMMUTABLE = (str, bytes, int, float, type(None))
class _Serving(threading.local):
    """The host thread serving a callback knows whose: a call back into that sandbox is
    refused. (A class default: reading an attribute a thread never set would raise inside.)"""

    session: DriverSession | None = None


_serving = _Serving()


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, died, broke protocol) — not the code in it."""


class SandboxBusy(SandboxError):
    """The sandbox is serving another request (e.g. a host function called back into the
    sandbox whose code is waiting for it). Nothing was sent; the sandbox is unharmed."""


class ProtocolViolation(SandboxError):
    """The sandbox sent a malformed, oversized or unexpected frame: it was killed."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"protocol violation: {detail}")
        self.detail = detail


@dataclass
class ExecResult:
    stdout: str = ""
    stderr: str = ""
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    error_line: int | None = None
    final: dict | None = None
    truncated: bool = False
    duration_s: float = 0.0
    timed_out: bool = False
    state_lost: bool = False
    # Files under artifacts/ the cell wrote, as the sandbox reports them ({path, size}): names
    # to show and fetch through the workspace's own path rules, never trusted beyond that.
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def to_dict(self) -> dict:
        return asdict(self)


def reported_files(files: Any) -> list[dict[str, Any]]:
    """The artifacts a result names, those that look like what the driver sends: relative paths
    under artifacts/ without `..`, sizes as integers, at most MAX_ARTIFACTS."""
    if not isinstance(files, list):
        return []
    kept = []
    for item in files[:MAX_ARTIFACTS]:
        path, size = (item.get("path"), item.get("size")) if isinstance(item, dict) else (0, 0)
        if (isinstance(path, str) and isinstance(size, int) and size >= 0 and len(path) <= 500
                and path.startswith(f"{ARTIFACTS}/") and ".." not in path.split("/")):
            kept.append({"path": path, "size": size})
    return kept


class Sandbox(Protocol):
    def start(self) -> None: ...
    def execute(self, code: str, timeout: float | None = None,
                callbacks: dict[str, Callback] | None = None,
                submit_fields: list[str] | None = None, cell: str | None = None
                ) -> ExecResult: ...
    def put_variable(self, name: str, value: Any) -> None: ...
    def get_variable(self, name: str) -> Any: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...


class DriverBackedSandbox:
    """The Sandbox operations every backend shares: they go to the running driver, which
    `_live()` returns (starting or restarting the sandbox as the backend sees fit)."""

    settings: Any
    _session: DriverSession | None

    def _live(self) -> DriverSession:
        raise NotImplementedError

    def execute(self, code: str, timeout: float | None = None,
                callbacks: dict[str, Callback] | None = None,
                submit_fields: list[str] | None = None, cell: str | None = None
                ) -> ExecResult:
        timeout = self.settings.exec_timeout_s if timeout is None else timeout
        return self._live().execute(code, timeout, callbacks, submit_fields, cell)

    def put_variable(self, name: str, value: Any) -> None:
        self._live().put_variable(name, value)

    def get_variable(self, name: str) -> Any:
        return self._live().get_variable(name)

    def interrupt(self) -> None:
        if self._session is not None:
            self._session.interrupt()


class DriverInput(Protocol):
    """The driver's stdin: a pipe, or anything that takes bytes and sends them on flush."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class DriverSession:
    """One live driver process: request/reply over JSON lines, host callbacks, timeouts.

    Backends supply the streams and how to kill the process; everything else is here so every
    backend behaves the same. With `direct`, `stdout` is a pipe the requesting thread reads
    itself (one thread hand-off less per request); otherwise a reader thread feeds a queue.
    Once `share_cpu` names the driver's supervisor (a process on this machine's own
    scheduler), the first PIN_S of each request runs the requesting thread and the supervisor
    on the CPU the thread is on (the supervisor holds the worker there too): every hand-off of
    the request and its reply then wakes a process on the waker's own CPU, with no
    inter-processor interrupt nor an idle CPU to wake.

    The sandbox is hostile: every request has a deadline on the host's clock (`request_timeout_s`
    unless the caller gives one), also for writing it, so a sandbox that stops reading cannot
    hang the host; lines are at most MAX_FRAME bytes, assembled in linear time; a frame that is
    not JSON, too large, of the wrong kind or for another request is a `ProtocolViolation`,
    which kills the sandbox and is logged once.
    """

    def __init__(self, stdin: DriverInput, stdout: IO[bytes], kill: Callable[[], None],
                 put_file: Callable[[str, Iterable[bytes]], str], max_output: int,
                 kill_grace_s: float, max_callback_workers: int = 64, direct: bool = False,
                 request_timeout_s: float = 60.0, outbox: Outbox | None = None,
                 drop_file: Callable[[str], None] | None = None,
                 sharing: FileSharing | None = None) -> None:
        """`put_file(name, chunks)` writes a value file the driver can read and returns its
        path there, which `drop_file` removes once the driver has read it (a shared text
        input's, once it is replaced); `outbox` reads the value files the driver writes
        (without one, large values cross inline); `sharing`: how the backend shares one value
        file between its sandboxes, if it can (see shared.py; without it a SharedText crosses
        as its text)."""
        self._stdin, self._stdout, self._kill, self._put_file = stdin, stdout, kill, put_file
        self._drop_file, self._outbox, self._sharing = drop_file, outbox, sharing
        # The text inputs set from a file the sandbox may hand on by reference, by name.
        self._shared: dict[str, SharedText] = {}
        self.max_output, self.kill_grace_s = max_output, kill_grace_s
        self.request_timeout_s = request_timeout_s
        # A pipe is written without blocking, against a deadline; other streams (Daytona's
        # POSTs) bound their own writes.
        self._in_fd: int | None = stdin.fileno() if hasattr(stdin, "fileno") else None
        if self._in_fd is not None:
            os.set_blocking(self._in_fd, False)
        self._replies: queue.Queue[bytes | FrameTooLarge | None] = queue.Queue()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_callback_workers, thread_name_prefix="sandbox-callback")
        # What each variable was last set to: (the object, its JSON when small, whether it is
        # trusted unchanged while it is the same object). `_restore`: unchanged ones to bind
        # again from the sandbox's own copy before the next cell.
        self._sent: dict[str, tuple[Any, tuple | None, bool]] = {}
        self._restore: set[str] = set()
        self._request_lock = threading.Lock()
        self._in_callbacks = 0
        self._queued_callbacks = 0
        self._host_busy = 0.0
        self._host_busy_since: float | None = None
        self._callback_lock = threading.Lock()
        self.alive = True
        # Set by whoever closes the sandbox on purpose (a stop, the wall limit): a cell it
        # cuts short reads as stopped, not as a crash.
        self.stopping = False
        self.names: list[str] = []  # the variables the cells made, as of the last result
        self.ready: dict = {}
        self._direct = direct
        self._lines = Lines()  # direct reads: the bytes after the last complete line
        self._eof = False
        self._partner: int | None = None  # the supervisor's pid on this host (share_cpu)
        self._partner_cpu: int | None = None  # the CPU it is held to, if any
        self._held: tuple[set[int], float] | None = None  # (the thread's CPUs, until when)
        if direct:
            self._fd = stdout.fileno()
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        else:
            # The reader's own descriptor: the stream's number, once whoever owns the stream
            # closes it, can be a new pipe's (another sandbox's replies) by the next read.
            threading.Thread(target=self._read, args=(os.dup(stdout.fileno()),),
                             daemon=True).start()

    # -- wire -------------------------------------------------------------------------------
    def _read(self, fd: int) -> None:
        lines = Lines()
        try:
            while lines.fill(fd):
                while (line := lines.next()) is not None:
                    self._replies.put(line)
        except FrameTooLarge as exc:
            self._replies.put(exc)
        except OSError:  # the sandbox is gone
            pass
        finally:
            os.close(fd)
        self._replies.put(None)

    def _send(self, message: dict, deadline: float) -> None:
        data = encode(message, strict=True)
        with self._send_lock:
            try:
                if self._in_fd is None:
                    self._stdin.write(data)
                    self._stdin.flush()
                else:
                    self._write(memoryview(data), deadline)
            except (BrokenPipeError, OSError, ValueError) as exc:
                self.alive = False
                raise SandboxError(f"sandbox is gone: {exc}") from exc

    def _write(self, data: memoryview, deadline: float) -> None:
        assert self._in_fd is not None
        writable = None  # made only when the pipe is full: most requests fit it at once
        while data:
            try:
                data = data[os.write(self._in_fd, data):]
                continue
            except BlockingIOError:
                pass
            if writable is None:
                writable = select.poll()
                writable.register(self._in_fd, select.POLLOUT)
            left = deadline - time.monotonic()
            if left <= 0 or not writable.poll(math.ceil(left * 1000)):
                self.kill()
                raise SandboxError("the sandbox stopped reading its requests; it was killed")

    def _next(self, deadline: float) -> dict | None:
        """Next frame; None when the process ended; raises TimeoutError at the deadline and
        ProtocolViolation for a line that is too long or not a JSON object with a type."""
        if self._direct:
            line = self._next_line(deadline)
        else:
            try:
                line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError from None
        if line is None:
            self.alive = False
            return None
        if isinstance(line, FrameTooLarge):
            self._violation(f"the sandbox sent {line}")
        try:
            frame = decode(line)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._violation(f"the sandbox sent a line that is not a frame: {line[:200]!r}")
        if "file" in frame:
            self._take_file(frame)
        return frame

    def _take_file(self, frame: dict) -> None:
        """The fields a frame left in a value file of the outbox, put back into it."""
        try:
            if self._outbox is None:
                raise RefusedFile("this sandbox has no outbox")
            merge(frame, self._outbox.take(frame.pop("file")))
        except RefusedFile as exc:
            self._violation(f"a value file the host refuses: {exc}")

    def _next_line(self, deadline: float) -> bytes | FrameTooLarge | None:
        while True:
            try:
                line = self._lines.next()
            except FrameTooLarge as exc:
                return exc
            if line is not None:
                return line
            if self._eof:
                return None
            now = time.monotonic()
            timeout = max(0.0, deadline - now)
            if self._held is not None:
                if now >= self._held[1]:
                    self._release_cpu()
                    continue
                timeout = min(timeout, self._held[1] - now)
                if not self._poll.poll(math.ceil(timeout * 1000)):
                    continue
            elif not self._poll.poll(math.ceil(timeout * 1000)):
                raise TimeoutError
            try:
                self._eof = not self._lines.fill(self._fd)
            except OSError:
                self._eof = True

    def _violation(self, detail: str) -> NoReturn:
        """Once per sandbox: it is killed, so nothing more is read from it."""
        log.error("sandbox protocol violation, killing the sandbox: %s", detail)
        self.kill()
        raise ProtocolViolation(detail)

    def wait_ready(self, timeout: float) -> dict:
        try:
            reply = self._next(time.monotonic() + timeout)
        except TimeoutError:
            raise SandboxError(f"sandbox did not start within {timeout:g} s") from None
        if reply is None or reply.get("type") != "ready":
            raise SandboxError(f"sandbox failed to start: {reply!r}")
        self.ready = reply
        return reply

    # -- one CPU per request ------------------------------------------------------------------
    def share_cpu(self, supervisor: int) -> None:
        """Hold the driver's supervisor (its pid on this host) with the requesting thread."""
        if self._direct and len(os.sched_getaffinity(0)) > 1:
            self._partner = supervisor

    def _hold_cpu(self) -> None:
        """Run this thread and the supervisor on this thread's CPU until the reply or PIN_S,
        whichever comes first."""
        if self._partner is None or (cpu := current_cpu()) is None:
            return
        try:
            cpus = os.sched_getaffinity(0)
            if cpu not in cpus or len(cpus) < 2:
                return
            os.sched_setaffinity(0, {cpu})
            self._held = (cpus, time.monotonic() + PIN_S)
            if self._partner_cpu != cpu:
                os.sched_setaffinity(self._partner, {cpu})
                self._partner_cpu = cpu
        except OSError:  # the supervisor is gone: the request says so
            self._partner_cpu = None

    def _release_cpu(self) -> None:
        """The thread gets its CPUs back; after a request longer than PIN_S, so does the
        supervisor (it stays held between quick requests: one system call less each)."""
        if self._held is None:
            return
        cpus, until = self._held
        self._held = None
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
            if time.monotonic() >= until and self._partner is not None:
                self._partner_cpu = None
                os.sched_setaffinity(self._partner, cpus)

    # -- requests ---------------------------------------------------------------------------
    def request(self, message: dict, callbacks: dict[str, Callback] | None = None,
                timeout: float | None = None) -> tuple[dict | None, bool]:
        """Send one request and serve callbacks until its reply.

        Returns (reply, timed_out). reply is None when the process died or was killed.
        """
        if _serving.session is self:
            raise SandboxBusy("a host function cannot call back into the sandbox whose code "
                              "called it: that sandbox is waiting for the function's result")
        if not self._request_lock.acquire(blocking=False):
            raise SandboxBusy("the sandbox is already serving a request from another thread; "
                              "one sandbox runs one request at a time")
        try:
            return self._request(message, callbacks, timeout)
        finally:
            self._request_lock.release()

    def _request(self, message: dict, callbacks: dict[str, Callback] | None,
                 timeout: float | None) -> tuple[dict | None, bool]:
        if not self.alive:
            raise SandboxError("sandbox is not running")
        timeout = self.request_timeout_s if timeout is None else timeout
        request_id = next(self._ids)
        started = time.monotonic()
        self._host_busy, self._host_busy_since = 0.0, None
        deadline = started + timeout
        self._hold_cpu()
        try:
            return self._serve(message, request_id, callbacks, timeout, started, deadline)
        finally:
            self._release_cpu()

    def _serve(self, message: dict, request_id: int, callbacks: dict[str, Callback] | None,
               timeout: float, started: float, deadline: float) -> tuple[dict | None, bool]:
        op = message["op"]
        # The op and the id go first: all the driver's supervisor reads of a request.
        self._send({"op": op, "id": request_id, **message}, deadline)
        timed_out = False
        while True:
            try:
                reply = self._next(deadline)
            except TimeoutError:
                # Time spent waiting on the host (a sub-model, a child run) is not the code's.
                used = time.monotonic() - started - self._host_time()
                if not timed_out and used < timeout:
                    deadline = time.monotonic() + max(timeout - used, 0.05)
                    continue
                if timed_out:  # the interrupt was ignored: the process must go
                    self.kill()
                    return None, True
                timed_out = True
                self.interrupt()
                deadline = time.monotonic() + self.kill_grace_s
                continue
            if reply is None:
                return None, timed_out
            kind = reply["type"]
            if kind == "callback" and op == "execute":
                self._queue_callback(reply, callbacks or {})
            elif kind == "protocol_error":  # the host sent a line the driver could not read
                log.error("sandbox protocol error: %s", reply.get("error"))
            elif kind == "violation":
                self._violation(f"the driver reported: {reply.get('error')}")
            elif kind in REPLIES.get(op, ("error",)) and reply.get("id") == request_id:
                if kind == "result" and not _well_formed(reply):
                    self._violation(f"a malformed result: {str(reply)[:200]}")
                return reply, timed_out
            else:
                self._violation(f"an unexpected {kind[:40]!r} frame (id {reply.get('id')!r}) "
                                f"while waiting for the reply to {op} {request_id}")

    def _queue_callback(self, call: dict, callbacks: dict[str, Callback]) -> None:
        if not (isinstance(call.get("call_id"), int) and isinstance(call.get("name"), str)
                and isinstance(call.get("args", []), list)
                and isinstance(call.get("kwargs", {}), dict)
                and well_formed(call.get("refs", []))):
            self._violation(f"a malformed callback frame: {str(call)[:200]}")
        with self._callback_lock:
            if self._queued_callbacks >= MAX_QUEUED_CALLBACKS:
                full = True
            else:
                full = False
                self._queued_callbacks += 1
        if full:
            self._violation(f"more than {MAX_QUEUED_CALLBACKS} host callbacks waiting at once")
        self._pool.submit(self._serve_callback, call, callbacks)

    def _host_time(self) -> float:
        """Seconds of the current request during which at least one host callback ran."""
        with self._callback_lock:
            running = self._host_busy_since
            return self._host_busy + (time.monotonic() - running if running else 0.0)

    def _serve_callback(self, call: dict, callbacks: dict[str, Callback]) -> None:
        name = call["name"]
        if name not in callbacks:  # answered at once, and not counted as the host's time
            with self._callback_lock:
                self._queued_callbacks -= 1
            self._reply_callback({"op": "callback_error", "call_id": call["call_id"],
                                  "error": f"NameError: no host function named {name!r}"})
            return
        with self._callback_lock:
            self._queued_callbacks -= 1
            self._in_callbacks += 1
            if self._in_callbacks == 1:
                self._host_busy_since = time.monotonic()
        _serving.session = self
        try:
            args, kwargs, function = call.get("args", []), call.get("kwargs", {}), callbacks[name]
            if call.get("refs"):
                resolve(args, kwargs, call["refs"], self._shared,
                        as_text=not getattr(function, TAKES_SHARED, False))
            value = function(*args, **kwargs)
            try:
                wire, tagged = to_wire(value)
            except Unsendable:  # as dspy's interpreter does: the result's text
                wire, tagged = str(value), False
            message = {"op": "callback_result", "call_id": call["call_id"], "value": wire}
            if tagged:
                message["tagged"] = True
        except Exception as exc:  # noqa: BLE001 - the error goes back to the sandbox code
            message = {"op": "callback_error", "call_id": call["call_id"],
                       "error": f"{type(exc).__name__}: {exc}"}
        finally:
            _serving.session = None
            with self._callback_lock:
                self._in_callbacks -= 1
                if self._in_callbacks == 0 and self._host_busy_since is not None:
                    self._host_busy += time.monotonic() - self._host_busy_since
                    self._host_busy_since = None
        self._reply_callback(message)

    def _reply_callback(self, message: dict) -> None:
        # the sandbox died while the host worked: execute() reports that
        with contextlib.suppress(SandboxError):
            self._send(message, time.monotonic() + self.request_timeout_s)

    def execute(self, code: str, timeout: float | None, callbacks: dict[str, Callback] | None,
                submit_fields: list[str] | None, cell: str | None = None) -> ExecResult:
        """`cell` names the cell in tracebacks (`<cell-3>`: the tree's iteration 3); without
        it the driver numbers cells itself."""
        timeout = self.request_timeout_s if timeout is None else timeout
        message = {"op": "execute", "code": code, "tools": sorted(callbacks or {}),
                   "submit_fields": submit_fields, "max_output": self.max_output,
                   "restore": self._take_restore()}
        if cell is not None:
            message["cell"] = cell
        sharing = sorted(n for n, f in (callbacks or {}).items() if getattr(f, TAKES_SHARED, False))
        if sharing:
            message["sharing"] = sharing
        started = time.perf_counter()
        try:
            reply, timed_out = self.request(message, callbacks, timeout)
        except SandboxBusy:
            raise
        except ProtocolViolation as exc:
            return ExecResult(error_type="ProtocolViolation",
                              error_message=f"{exc}; the sandbox was killed and its variables "
                              "are lost", duration_s=time.perf_counter() - started,
                              state_lost=True)
        except SandboxError as exc:  # it died between calls, or stopped reading
            reply, timed_out, failure = None, False, str(exc)
        else:
            failure = "the sandbox process died"
        if reply is None and self.stopping and not timed_out:
            self.kill()
            lost = (f"; its variables are lost: {', '.join(self.names)}" if self.names else "")
            return ExecResult(error_type="Stopped", error_message=f"the cell was stopped{lost}",
                              duration_s=time.perf_counter() - started, state_lost=True)
        if reply is None:
            self.kill()
            what = (f"killed after exceeding its {timeout:g} s timeout (interrupt ignored)"
                    if timed_out else failure)
            return ExecResult(error_type="SandboxDied" if not timed_out else "TimeoutError",
                              error_message=f"{what}; its variables are lost",
                              duration_s=time.perf_counter() - started, timed_out=timed_out,
                              state_lost=True)
        error = reply.get("error") or {}
        if reply.get("type") == "error":
            raise SandboxError(f"driver rejected execute: {error.get('message')}")

        names = reply.get("names")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            self.names = names[:MAX_NAMES]
        result = ExecResult(
            stdout=reply.get("stdout", ""), stderr=reply.get("stderr", ""),
            error_type=error.get("type"), error_message=error.get("message"),
            traceback=error.get("traceback"), error_line=error.get("line"),
            final=reply.get("final"), truncated=reply.get("truncated", False),
            duration_s=reply.get("duration_s", 0.0), timed_out=timed_out,
            files=reported_files(reply.get("files")))
        if timed_out:
            result.error_type = "TimeoutError"
            result.error_message = (f"execution exceeded {timeout:g} s and was interrupted; "
                                    "variables are kept")
        return result

    def put_variable(self, name: str, value: Any) -> None:
        """Bind `name` in the sandbox to `value` before the next cell. A value the sandbox
        already holds is not sent again: the sandbox binds a fresh copy of its own.

        Unchanged is judged by identity, not content, wherever content would cost: the same
        object as last time is taken as unchanged without a look (no serialisation, no hash)
        when it cannot change (a string, a number) or when it is large (more than INLINE_LIMIT
        as JSON: a host that changes a large input in place between cells must pass a new
        object); a small value is compared by its JSON, so a small list changed in place is
        sent again, and a string equal to the last one is not. A large value crosses as a
        file (`put_file`, bulk.value_file's layout), written a slice at a time.

        A large text goes as a file the backend can share (`sharing`): kept, not dropped, so
        this sandbox may hand it, or a slice of it, to another by reference. A SharedText (such
        a reference, resolved by the host) is linked into this sandbox and read there from the
        one copy."""
        known = self._sent.get(name)
        if known is not None and known[0] is value and known[2]:
            self._restore.add(name)
            return
        if isinstance(value, SharedText):
            self._put_shared(name, value)
            return
        if isinstance(value, str):
            if known is not None and isinstance(known[0], str) and known[0] == value:
                self._sent[name] = (value, None, True)
                self._restore.add(name)
                return
            payload, fmt, tagged, wire = value, "text", False, value
        paths: list[str] = []  # the value files written for this value, dropped once read
        shared: SharedText | None = None

        def spill(text: str) -> str:
            paths.append(self._put_file(f"{name}.text", value_file(text_chunks(text))))
            return paths[-1]

        try:
            if not isinstance(value, str):
                try:
                    wire, tagged = to_wire(value, spill, INLINE_LIMIT)
                    payload, fmt = json.dumps(wire, ensure_ascii=False), "json"
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"variable {name!r} ({type(value).__name__}) cannot be sent "
                                    f"to the sandbox: {exc}") from None
            small = len(payload) <= INLINE_LIMIT and not paths
            content = (fmt, tagged, payload) if small else None
            if known is not None and content is not None and known[1] == content:
                self._sent[name] = (value, content, isinstance(value, IMMUTABLE))
                self._restore.add(name)
                return
            if len(payload) <= INLINE_LIMIT:
                message: dict[str, Any] = {"op": "set_var", "name": name, "value": wire}
            else:
                paths.append(self._put_file(f"{name}.{fmt}", value_file(text_chunks(payload))))
                message = {"op": "set_var", "name": name, "path": paths[-1], "format": fmt}
                if fmt == "text" and self._sharing is not None:
                    shared = SharedText.whole(self._sharing.host_path(paths[-1]), payload.isascii())
                    message.update(start=shared.start, stop=shared.stop, share=True,
                                   ascii=shared.ascii)
            del payload, wire
            if tagged:
                message["tagged"] = True
            self._restore.discard(name)
            self._sent.pop(name, None)
            self._unshare(name)
            self._checked(message)
            if shared is not None:  # read by the driver, and kept for the sandboxes it goes to
                self._shared[name] = shared
                paths.pop()
        finally:
            if self._drop_file is not None:
                for path in paths:
                    self._drop_file(path)
        self._sent[name] = (value, content, isinstance(value, IMMUTABLE) or not small)

    def _put_shared(self, name: str, value: SharedText) -> None:
        if self._sharing is None:  # the text crosses as any other would
            self.put_variable(name, value.read())
            self._sent[name] = (value, None, True)
            return
        inside = self._sharing.link_file(value.path, f"{name}.text")
        self._restore.discard(name)
        self._sent.pop(name, None)
        self._unshare(name)
        try:
            self._checked({"op": "set_var", "name": name, "path": inside, "format": "text",
                           "start": value.start, "stop": value.stop, "share": True,
                           "ascii": value.ascii})
        except BaseException:
            if self._drop_file is not None:
                self._drop_file(inside)
            raise
        self._shared[name] = SharedText(self._sharing.host_path(inside), value.start,
                                        value.stop, value.ascii)
        self._sent[name] = (value, None, True)

    def _unshare(self, name: str) -> None:
        """The file of a shared input that is replaced, removed: the driver read it (a str laid
        over its pages keeps them), and the sandbox can no longer name it."""
        old = self._shared.pop(name, None)
        if old is not None and self._drop_file is not None:
            self._drop_file(str(old.path))

    def _take_restore(self) -> list[str]:
        names, self._restore = sorted(self._restore), set()
        return names

    def get_variable(self, name: str) -> Any:
        return self._checked({"op": "get_var", "name": name,
                              "restore": self._take_restore()}).get("value")

    def _checked(self, message: dict) -> dict:
        reply, timed_out = self.request(message)
        if reply is None:
            self.kill()
            raise SandboxError(f"the sandbox did not answer {message['op']} within "
                               f"{self.request_timeout_s:g} s; it was killed" if timed_out
                               else "the sandbox process died")
        if reply.get("type") == "error":
            error = reply["error"]
            raise SandboxError(f"{error['type']}: {error['message']}")
        return reply

    def interrupt(self) -> None:
        if self.alive:
            with contextlib.suppress(SandboxError):
                self._send({"op": "interrupt"}, time.monotonic() + self.kill_grace_s)

    def kill(self) -> None:
        self.alive = False
        self._kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.stopping = True
        if self.alive:
            with contextlib.suppress(SandboxError):
                self._send({"op": "shutdown"}, time.monotonic() + self.kill_grace_s)
        self.kill()


_MAYBE_DICT, _MAYBE_STR, _MAYBE_INT, _NUMBER = ((dict, type(None)), (str, type(None)),
                                                 (int, type(None)), (int, float))


def _well_formed(result: dict) -> bool:
    """A result frame's fields have the types ExecResult promises. (Tuples of types, made once:
    `dict | None` in an isinstance call builds a union on every call.)"""
    error = result.get("error")
    return (isinstance(result.get("stdout", ""), str) and isinstance(result.get("stderr", ""), str)
            and isinstance(result.get("final"), _MAYBE_DICT)
            and isinstance(result.get("truncated", False), bool)
            and isinstance(result.get("duration_s", 0.0), _NUMBER)
            and (error is None or isinstance(error, dict)
                 and isinstance(error.get("type"), str) and isinstance(error.get("message"), str)
                 and isinstance(error.get("traceback"), _MAYBE_STR)
                 and isinstance(error.get("line"), _MAYBE_INT)))
