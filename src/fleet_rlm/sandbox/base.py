"""The Sandbox seam and the host side of the driver protocol, shared by every backend."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

log = logging.getLogger(__name__)

DRIVER_SOURCE = Path(__file__).with_name("driver.py")
# Values larger than this cross as files rather than inline JSON lines.
INLINE_LIMIT = 64 * 1024

Callback = Callable[..., Any]


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, died, broke protocol) — not the code in it."""


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

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def to_dict(self) -> dict:
        return asdict(self)


class Sandbox(Protocol):
    def start(self) -> None: ...
    def execute(self, code: str, timeout: float | None = None,
                callbacks: dict[str, Callback] | None = None,
                submit_fields: list[str] | None = None) -> ExecResult: ...
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
                submit_fields: list[str] | None = None) -> ExecResult:
        timeout = self.settings.exec_timeout_s if timeout is None else timeout
        return self._live().execute(code, timeout, callbacks, submit_fields)

    def put_variable(self, name: str, value: Any) -> None:
        self._live().put_variable(name, value)

    def get_variable(self, name: str) -> Any:
        return self._live().get_variable(name)

    def interrupt(self) -> None:
        if self._session is not None:
            self._session.interrupt()


class DriverSession:
    """One live driver process: request/reply over JSON lines, host callbacks, timeouts.

    Backends supply the streams and how to kill the process; everything else is here so every
    backend behaves the same. With `direct`, `stdout` is a pipe the requesting thread reads
    itself (one thread hand-off less per request); otherwise a reader thread feeds a queue.
    """

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], kill: Callable[[], None],
                 put_file: Callable[[str, bytes], str], max_output: int, kill_grace_s: float,
                 max_callback_workers: int = 64, direct: bool = False) -> None:
        self._stdin, self._stdout, self._kill, self._put_file = stdin, stdout, kill, put_file
        self.max_output, self.kill_grace_s = max_output, kill_grace_s
        self._replies: queue.Queue[dict | None] = queue.Queue()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_callback_workers, thread_name_prefix="sandbox-callback")
        self._sent: dict[str, Any] = {}
        self._in_callbacks = 0
        self._host_busy, self._host_busy_since = 0.0, None
        self._callback_lock = threading.Lock()
        self.alive = True
        self.ready: dict = {}
        self._direct = direct
        self._pending = bytearray()  # direct reads: bytes after the last complete line
        self._eof = False
        if direct:
            self._fd = stdout.fileno()
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        else:
            threading.Thread(target=self._read, daemon=True).start()

    # -- wire -------------------------------------------------------------------------------
    def _read(self) -> None:
        for line in self._stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:
                log.warning("sandbox sent a non-JSON line: %r", line[:200])
        self._replies.put(None)

    def _send(self, message: dict) -> None:
        # backslashreplace: a lone surrogate becomes a JSON \u escape the driver decodes back.
        data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
        with self._send_lock:
            try:
                self._stdin.write(data)
                self._stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                self.alive = False
                raise SandboxError(f"sandbox is gone: {exc}") from exc

    def _next(self, deadline: float | None) -> dict | None:
        """Next reply; None when the process ended; raises TimeoutError at the deadline."""
        if self._direct:
            reply = self._next_line(deadline)
        else:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError from None
        if reply is None:
            self.alive = False
        return reply

    def _next_line(self, deadline: float | None) -> dict | None:
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[:end + 1])
                del self._pending[:end + 1]
                try:
                    return json.loads(line)
                except ValueError:
                    log.warning("sandbox sent a non-JSON line: %r", line[:200])
                    continue
            if self._eof:
                return None
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._poll.poll(None if timeout is None else math.ceil(timeout * 1000)):
                raise TimeoutError
            try:
                chunk = os.read(self._fd, 1 << 20)
            except OSError:
                chunk = b""
            if chunk:
                self._pending += chunk
            else:
                self._eof = True

    def wait_ready(self, timeout: float) -> dict:
        try:
            reply = self._next(time.monotonic() + timeout)
        except TimeoutError:
            raise SandboxError(f"sandbox did not start within {timeout:g} s") from None
        if reply is None or reply.get("type") != "ready":
            raise SandboxError(f"sandbox failed to start: {reply!r}")
        self.ready = reply
        return reply

    # -- requests ---------------------------------------------------------------------------
    def request(self, message: dict, callbacks: dict[str, Callback] | None = None,
                timeout: float | None = None) -> tuple[dict | None, bool]:
        """Send one request and serve callbacks until its reply.

        Returns (reply, timed_out). reply is None when the process died or was killed.
        """
        if not self.alive:
            raise SandboxError("sandbox is not running")
        request_id = next(self._ids)
        self._send({**message, "id": request_id})
        started = time.monotonic()
        self._host_busy, self._host_busy_since = 0.0, None
        deadline = None if timeout is None else started + timeout
        timed_out = False
        while True:
            try:
                reply = self._next(deadline)
            except TimeoutError:
                # Time spent waiting on the host (a sub-model, a child run) is not the code's.
                used = time.monotonic() - started - self._host_time()
                if not timed_out and timeout is not None and used < timeout:
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
            kind = reply.get("type")
            if kind == "callback":
                self._pool.submit(self._serve_callback, reply, callbacks or {})
            elif kind == "protocol_error":
                log.error("sandbox protocol error: %s", reply.get("error"))
            elif reply.get("id") == request_id:
                return reply, timed_out

    def _host_time(self) -> float:
        """Seconds of the current request during which at least one host callback ran."""
        with self._callback_lock:
            running = self._host_busy_since
            return self._host_busy + (time.monotonic() - running if running else 0.0)

    def _serve_callback(self, call: dict, callbacks: dict[str, Callback]) -> None:
        name = call.get("name")
        with self._callback_lock:
            self._in_callbacks += 1
            if self._in_callbacks == 1:
                self._host_busy_since = time.monotonic()
        try:
            if name not in callbacks:
                raise NameError(f"no host function named {name!r}")
            value = callbacks[name](*call.get("args", []), **call.get("kwargs", {}))
            json.dumps(value)
            message = {"op": "callback_result", "call_id": call["call_id"], "value": value}
        except Exception as exc:  # noqa: BLE001 - the error goes back to the sandbox code
            message = {"op": "callback_error", "call_id": call["call_id"],
                       "error": f"{type(exc).__name__}: {exc}"}
        finally:
            with self._callback_lock:
                self._in_callbacks -= 1
                if self._in_callbacks == 0 and self._host_busy_since is not None:
                    self._host_busy += time.monotonic() - self._host_busy_since
                    self._host_busy_since = None
        try:
            self._send(message)
        except SandboxError:
            pass  # the sandbox died while the host worked; execute() reports that

    def execute(self, code: str, timeout: float | None, callbacks: dict[str, Callback] | None,
                submit_fields: list[str] | None) -> ExecResult:
        message = {"op": "execute", "code": code, "tools": sorted(callbacks or {}),
                   "submit_fields": submit_fields, "max_output": self.max_output}
        started = time.perf_counter()
        try:
            reply, timed_out = self.request(message, callbacks, timeout)
        except SandboxError:  # it died between calls: the request found no reader
            reply, timed_out = None, False
        if reply is None:
            self.kill()
            what = (f"killed after exceeding its {timeout:g} s timeout (interrupt ignored)"
                    if timed_out else "the sandbox process died")
            return ExecResult(error_type="SandboxDied" if not timed_out else "TimeoutError",
                              error_message=f"{what}; its variables are lost",
                              duration_s=time.perf_counter() - started, timed_out=timed_out,
                              state_lost=True)
        error = reply.get("error") or {}
        if reply.get("type") == "error":
            raise SandboxError(f"driver rejected execute: {error.get('message')}")
        result = ExecResult(
            stdout=reply.get("stdout", ""), stderr=reply.get("stderr", ""),
            error_type=error.get("type"), error_message=error.get("message"),
            traceback=error.get("traceback"), error_line=error.get("line"),
            final=reply.get("final"), truncated=reply.get("truncated", False),
            duration_s=reply.get("duration_s", 0.0), timed_out=timed_out)
        if timed_out:
            result.error_type = "TimeoutError"
            result.error_message = (f"execution exceeded {timeout:g} s and was interrupted; "
                                    "variables are kept")
        return result

    def put_variable(self, name: str, value: Any) -> None:
        if isinstance(value, str):
            payload, fmt = value, "text"
        else:
            try:
                payload, fmt = json.dumps(value, ensure_ascii=False), "json"
            except (TypeError, ValueError) as exc:
                raise TypeError(f"variable {name!r} ({type(value).__name__}) cannot be sent to "
                                f"the sandbox: it is not JSON-serialisable ({exc})") from exc
        # Compare content, not identity: a list mutated in place is still the same object.
        sent = (fmt, payload if fmt == "text" else hashlib.sha256(payload.encode()).digest())
        if self._sent.get(name) == sent:
            return
        if len(payload) > INLINE_LIMIT:
            path = self._put_file(f"{name}.{fmt}", payload.encode("utf-8"))
            message = {"op": "set_var", "name": name, "path": path, "format": fmt}
        else:
            message = {"op": "set_var", "name": name, "value": value}
        self._checked(message)
        self._sent[name] = sent

    def get_variable(self, name: str) -> Any:
        return self._checked({"op": "get_var", "name": name}).get("value")

    def _checked(self, message: dict) -> dict:
        reply, _ = self.request(message)
        if reply is None:
            raise SandboxError("the sandbox process died")
        if reply.get("type") == "error":
            error = reply["error"]
            raise SandboxError(f"{error['type']}: {error['message']}")
        return reply

    def interrupt(self) -> None:
        if self.alive:
            try:
                self._send({"op": "interrupt"})
            except SandboxError:
                pass

    def kill(self) -> None:
        self.alive = False
        self._kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self.alive:
            try:
                self._send({"op": "shutdown"})
            except SandboxError:
                pass
        self.kill()

