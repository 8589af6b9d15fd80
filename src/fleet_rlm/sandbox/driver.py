"""REPL driver that runs inside a sandbox. Standard library only.

Speaks JSON lines: requests on stdin, replies on stdout. Model-written code never sees either
stream: both are moved to private descriptors before any code runs, and the code's own
stdout/stderr are captured per execution.

Requests (host -> driver), each with an ``id`` unless noted:
  {"op": "execute", "code": str, "tools": [names], "submit_fields": [names] | null,
   "max_output": int}
  {"op": "set_var", "name": str, "value": json}           inline value
  {"op": "set_var", "name": str, "path": str, "format": "text" | "json"}   value from a file
  {"op": "get_var", "name": str}
  {"op": "callback_result", "call_id": int, "value": json}          (no id)
  {"op": "callback_error", "call_id": int, "error": str}            (no id)
  {"op": "interrupt"}                                               (no id)
  {"op": "shutdown"}                                                (no id)
Replies (driver -> host):
  {"type": "ready", "python": str}
  {"type": "callback", "call_id": int, "name": str, "args": [...], "kwargs": {...}}
  {"type": "result", "id": int, "stdout": str, "stderr": str, "error": {...} | null,
   "final": json | null, "truncated": bool, "duration_s": float}
  {"type": "var", "id": int, "value": json}  |  {"type": "error", "id": int, "error": {...}}
"""

from __future__ import annotations

import ast
import io
import itertools
import json
import linecache
import os
import queue
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback

CELL = "<cell-{}>"

# A lone surrogate in a reply goes out as a JSON \u escape (which decodes back to it) instead of
# killing the driver; undecodable request bytes become a protocol error, not a dead reader.
_out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="backslashreplace", closefd=True)
_in = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace", closefd=True)
_send_lock = threading.Lock()


def send(message: dict) -> None:
    line = json.dumps(message, ensure_ascii=False, default=repr)
    with _send_lock:
        _out.write(line + "\n")
        _out.flush()


class Submitted(BaseException):
    """Raised by SUBMIT(); BaseException so a bare `except Exception` in model code can't eat it."""

    def __init__(self, value: dict) -> None:
        self.value = value


class CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the first `cap` characters and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.parts, self.kept, self.dropped = cap, [], 0, 0
        self.buffer = _BytesInto(self)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        return "".join(self.parts)


class _BytesInto(io.RawIOBase):
    """`sys.stdout.buffer`: bytes decoded leniently so non-UTF-8 output can't break the protocol."""

    def __init__(self, text: CappedText) -> None:
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.text.write(bytes(data).decode("utf-8", errors="replace"))
        return len(data)


class Driver:
    def __init__(self) -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.requests: queue.Queue = queue.Queue()
        self.pending: dict[int, queue.Queue] = {}
        self.pending_lock = threading.Lock()
        self.call_ids = itertools.count(1)
        self.cells = itertools.count(1)
        self.main_thread = threading.main_thread().ident
        self.executing = False

    # -- reading ---------------------------------------------------------------------------
    def read_forever(self) -> None:
        for line in _in:
            try:
                message = json.loads(line)
                op = message["op"]
            except (ValueError, KeyError, TypeError):
                send({"type": "protocol_error", "error": f"bad request line: {line[:200]!r}"})
                continue
            if op in ("callback_result", "callback_error"):
                with self.pending_lock:
                    waiter = self.pending.get(message.get("call_id"))
                if waiter is not None:
                    waiter.put(message)
            elif op == "interrupt":
                if self.executing:
                    signal.pthread_kill(self.main_thread, signal.SIGINT)
            else:
                self.requests.put(message)
        self.requests.put({"op": "shutdown"})

    # -- host callbacks --------------------------------------------------------------------
    def call_host(self, name: str, args: tuple, kwargs: dict):
        call_id = next(self.call_ids)
        waiter: queue.Queue = queue.Queue(maxsize=1)
        with self.pending_lock:
            self.pending[call_id] = waiter
        try:
            try:
                payload = {"type": "callback", "call_id": call_id, "name": name,
                           "args": list(args), "kwargs": kwargs}
                json.dumps(payload)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"arguments to {name}() must be JSON-serialisable: {exc}") from None
            send(payload)
            reply = waiter.get()
        finally:
            with self.pending_lock:
                self.pending.pop(call_id, None)
        if reply["op"] == "callback_error":
            raise RuntimeError(f"{name}() failed: {reply.get('error')}")
        return reply.get("value")

    def host_function(self, name: str):
        def call(*args, **kwargs):
            return self.call_host(name, args, kwargs)

        call.__name__ = call.__qualname__ = name
        return call

    # -- variables -------------------------------------------------------------------------
    def set_var(self, message: dict) -> None:
        name = message["name"]
        if not name.isidentifier():
            raise ValueError(f"not a valid variable name: {name!r}")
        if "path" in message:
            with open(message["path"], encoding="utf-8") as handle:
                value = handle.read() if message.get("format") == "text" else json.load(handle)
        else:
            value = message["value"]
        self.namespace[name] = value

    def get_var(self, message: dict):
        name = message["name"]
        if name not in self.namespace:
            raise NameError(f"name {name!r} is not defined")
        value = self.namespace[name]
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} holds a {type(value).__name__}, not JSON-serialisable: {exc}") from None
        return value

    # -- execution -------------------------------------------------------------------------
    def execute(self, message: dict) -> dict:
        cap = int(message.get("max_output", 100_000))
        for name in message.get("tools", []):
            self.namespace[name] = self.host_function(name)
        fields = message.get("submit_fields")
        self.namespace["SUBMIT"] = self.make_submit(fields)

        filename = CELL.format(next(self.cells))
        code = message["code"]
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        stdout, stderr = CappedText(cap), CappedText(cap)
        error, final = None, None
        started = time.perf_counter()
        # fds 1 and 2 point at one capture file for the driver's lifetime (see main): output
        # written below Python, by C code or child processes, lands there, never in the protocol.
        os.ftruncate(1, 0)
        os.lseek(1, 0, os.SEEK_SET)
        sys.stdout, sys.stderr = stdout, stderr
        self.executing = True
        try:
            self.run_cell(code, filename, stdout)
        except Submitted as submitted:
            final = submitted.value
        except BaseException as exc:  # noqa: BLE001 - every failure of model code is reported
            error = describe(exc, filename)
        finally:
            self.executing = False
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        raw = os.pread(1, cap + 1, 0)
        unread = os.fstat(1).st_size - len(raw)
        if raw:
            stdout.write(raw.decode("utf-8", errors="replace"))
        dropped = stdout.dropped + stderr.dropped + unread
        truncated = dropped > 0
        out = stdout.value()
        if truncated:
            out += f"\n[output truncated: {dropped} characters dropped]"
        return {"type": "result", "stdout": out, "stderr": stderr.value(), "error": error,
                "final": final, "truncated": truncated,
                "duration_s": round(time.perf_counter() - started, 6)}

    def run_cell(self, code: str, filename: str, stdout: CappedText) -> None:
        tree = ast.parse(code, filename=filename, mode="exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
            if value is not None:
                stdout.write(repr(value) + "\n")

    def make_submit(self, fields: list[str] | None):
        def SUBMIT(*args, **kwargs):  # noqa: N802 - the name models are told to call
            if fields is None:
                if len(args) == 1 and not kwargs:
                    raise Submitted({"output": args[0]})
                raise Submitted(dict(kwargs))
            if args and kwargs:
                raise TypeError("SUBMIT takes positional or keyword values, not both")
            if len(args) > len(fields):
                raise TypeError(f"SUBMIT takes at most {len(fields)} values: {', '.join(fields)}")
            values = dict(zip(fields, args, strict=False)) if args else dict(kwargs)
            missing = [f for f in fields if f not in values]
            extra = [k for k in values if k not in fields]
            if missing or extra:
                raise TypeError(f"SUBMIT expects {', '.join(fields)}; "
                                f"missing {missing}, unexpected {extra}")
            raise Submitted(values)

        return SUBMIT

    # -- loop ------------------------------------------------------------------------------
    def on_sigint(self, signum, frame) -> None:
        # An interrupt that lands between cells must not kill the driver.
        if self.executing:
            raise KeyboardInterrupt

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self.on_sigint)
        threading.Thread(target=self.read_forever, daemon=True).start()
        send({"type": "ready", "python": sys.version.split()[0], "pid": os.getpid()})
        while True:
            message = self.requests.get()
            op, request_id = message["op"], message.get("id")
            if op == "shutdown":
                return
            try:
                if op == "execute":
                    reply = self.execute(message)
                elif op == "set_var":
                    self.set_var(message)
                    reply = {"type": "var", "value": None}
                elif op == "get_var":
                    reply = {"type": "var", "value": self.get_var(message)}
                else:
                    raise ValueError(f"unknown op {op!r}")
            except BaseException as exc:  # noqa: BLE001 - reported to the host, loop goes on
                reply = {"type": "error", "error": describe(exc, None)}
            reply["id"] = request_id
            send(reply)


def describe(exc: BaseException, filename: str | None) -> dict:
    """Error type, message and a traceback limited to the model's own code."""
    if isinstance(exc, SyntaxError):
        lines = traceback.format_exception_only(type(exc), exc)
    else:
        report = traceback.TracebackException.from_exception(exc)
        # The driver's own frames are noise to the model; library frames it called are not.
        report.stack = traceback.StackSummary.from_list(
            [f for f in report.stack if f.filename != __file__])
        lines = list(report.format())
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(lines),
            "line": exc.lineno if isinstance(exc, SyntaxError) else _last_line(exc)}


def _last_line(exc: BaseException) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell-")]
    return frames[-1].lineno if frames else None


def apply_limits(memory_mb: int, nproc: int, fsize_mb: int) -> None:
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if fsize_mb > 0:
        limit = fsize_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG


def become(uid: int) -> None:
    """Started as root by the host: drop to the sandbox's own uid for good, with no capability
    left even in the bounding set, and no way back through setuid binaries."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_capbset_drop = 38, 24
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    cap = 0
    while libc.prctl(pr_capbset_drop, cap, 0, 0, 0) == 0:
        cap += 1
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:  # inheritable set too: all zero
        raise OSError(ctypes.get_errno(), "capset failed")


def main(argv: list[str]) -> None:
    options = dict(zip(argv[0::2], argv[1::2], strict=True))
    apply_limits(int(options.get("--memory-mb", 0)), int(options.get("--nproc", 0)),
                 int(options.get("--fsize-mb", 0)))
    if "--uid" in options:
        become(int(options["--uid"]))
    sys.stdin = open(os.devnull)  # model code reading stdin must not eat protocol lines
    capture = tempfile.TemporaryFile()
    os.dup2(capture.fileno(), 1)
    os.dup2(capture.fileno(), 2)
    Driver().serve()


if __name__ == "__main__":
    main(sys.argv[1:])
