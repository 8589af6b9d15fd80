"""Daytona backend: the same driver.py as a long-lived process in a Daytona sandbox.

One Daytona sandbox per `DaytonaSandbox`, so one per RLM node. `start()` creates it (from
FLEET_DAYTONA_SNAPSHOT when that snapshot carries this version of the driver, else from
Daytona's default snapshot with driver.py uploaded) and runs the driver as an asynchronous
command of a Daytona session. The host speaks the driver's JSON-lines protocol to it through
the shared `DriverSession`, exactly as the local backend does.

Transport. The driver needs a byte stream each way for as long as the sandbox lives. The SDK
offers four ways to run a process:

* `process.exec` / `code_run`: one process per call, nothing kept between calls. Not a REPL.
* A PTY session: one WebSocket both ways, but a terminal in between (echo, CR/LF rewriting, a
  4 KiB line limit in canonical mode, ^C/^D interpreted) until it's switched to raw mode, and
  stdout and stderr merged into one stream, so a stray write to fd 2 would corrupt the protocol.
* A session command started with `run_async=True`: the daemon feeds its stdin from a FIFO that
  `send_session_command_input` writes (one HTTP POST per message; echo into the log turned off
  with `suppress_input_echo`), and `get_session_command_logs_async` pushes its output over a
  WebSocket (`follow=true`), stdout and stderr apart. No terminal, so bytes arrive as written,
  and the exit code can still be read after the process dies.
* A server inside the sandbox, reached through a preview URL: an inbound port, which a
  network-blocked sandbox shouldn't have.

This module uses the session command. Each host→driver message costs one POST (one round trip
to the toolbox proxy). Driver→host messages are pushed over the open WebSocket, with no
polling. An `execute` is one POST plus its reply on the stream, and each host callback
(`llm_query`, `rlm_query`) adds one POST for its result. Against the local stand-in of the API
in the tests, a round trip costs ~2 ms for an `execute` and ~5 ms for an `execute` with one
callback. Against a real region, add one network round trip per POST. That is small next to
the model call that wrote the code. The daemon relays output line by line through a shell
loop, which suits a line protocol.

Large values go up with the SDK's file upload and the driver reads them from the file. An
interrupt is the protocol's `{"op": "interrupt"}`. A kill deletes the session, which ends the
process. `close()` deletes the sandbox. Nothing leaks: every sandbox carries the `fleet-rlm`
label (plus session/turn/node when known), stops after `daytona_auto_stop_minutes` without
activity and is deleted once stopped (`daytona_auto_delete_minutes`, default 0), and
`fleet daytona gc` deletes whatever is left.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import itertools
import logging
import math
import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..config import Settings
from .base import DRIVER_SOURCE, Callback, DriverSession, ExecResult, SandboxError

log = logging.getLogger(__name__)

INSTALL_HINT = "the Daytona backend needs the Daytona SDK: pip install 'fleet-rlm[daytona]'"
DEFAULT_API_URL = "https://app.daytona.io/api"
LABEL = "fleet-rlm"
SNAPSHOT_PREFIX = "fleet-rlm-driver-"
SNAPSHOT_BASE_IMAGE = "python:3.12-slim"
SNAPSHOT_DRIVER = "/opt/fleet/driver.py"
# The working directory code is told it has, as on the local backend; the snapshot makes it.
WORK_DIR = "/work"
# 429 and 503 mean the request never reached a sandbox, so sending it again is safe.
RETRIES = 4
RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0
# Consecutive reconnects of a driver's output stream that brought nothing new before giving up.
MAX_RECONNECTS = 3

T = TypeVar("T")

_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "fleet_daytona_labels", default={})  # noqa: B039 - never mutated, only replaced
_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _sdk() -> Any:
    try:
        import daytona
    except ImportError as exc:
        raise SandboxError(INSTALL_HINT) from exc
    return daytona


@contextlib.contextmanager
def sandbox_labels(**labels: str | None) -> Iterator[None]:
    """Label the Daytona sandboxes created in this context, e.g. session=, turn=, node=."""
    token = _labels.set({**_labels.get(), **{k: v for k, v in labels.items() if v}})
    try:
        yield
    finally:
        _labels.reset(token)


def client(settings: Settings) -> Any:
    """One `daytona.Daytona` per key, URL and target, shared by every sandbox of the process."""
    sdk = _sdk()
    key = (settings.daytona_api_key, settings.daytona_api_url, settings.daytona_target)
    with _clients_lock:
        if key not in _clients:
            try:
                _clients[key] = sdk.Daytona(sdk.DaytonaConfig(
                    api_key=settings.daytona_api_key, api_url=settings.daytona_api_url,
                    target=settings.daytona_target))
            except sdk.DaytonaError as exc:
                raise explain(exc, settings, "connect") from None
        return _clients[key]


def explain(exc: Exception, settings: Settings, action: str) -> SandboxError:
    """A SandboxError for a failed Daytona call, with what to do about it."""
    sdk = _sdk()
    status = getattr(exc, "status_code", None)
    text = str(exc)
    lowered = text.lower()
    url = settings.daytona_api_url or os.environ.get("DAYTONA_API_URL") or DEFAULT_API_URL
    if isinstance(exc, sdk.DaytonaAuthenticationError) and status is None:
        hint = ("no Daytona API key: set DAYTONA_API_KEY (or FLEET_DAYTONA_API_KEY) to a key "
                "from https://app.daytona.io/dashboard/keys")
    elif status in (403, 429) and "quota" in lowered:
        hint = ("the Daytona organisation's quota is used up: delete leftover sandboxes with "
                "`fleet daytona gc`, lower the fan-out (FLEET_MAX_DEPTH), or raise the quota")
    elif status == 401:
        hint = ("Daytona rejected the API key: check DAYTONA_API_KEY (or FLEET_DAYTONA_API_KEY) "
                "and that it was issued for this API URL")
    elif status == 403:
        hint = "the API key lacks the sandbox permissions (it needs write and delete on sandboxes)"
    elif status == 429:
        hint = f"Daytona kept rate-limiting after {RETRIES} retries; try again later"
    elif _unreachable(exc):
        hint = (f"cannot reach the Daytona API at {url}: check DAYTONA_API_URL "
                f"(default {DEFAULT_API_URL}) and the network or proxy")
    elif status in (400, 404, 422) and ("region" in lowered or "target" in lowered):
        hint = (f"Daytona does not know the target {settings.daytona_target!r}: set "
                "DAYTONA_TARGET to a region of the organisation (e.g. us, eu), or unset it")
    elif isinstance(exc, sdk.DaytonaTimeoutError):
        hint = (f"nothing within {settings.daytona_create_timeout_s:g} s; Daytona may be busy: "
                "retry, or raise FLEET_DAYTONA_CREATE_TIMEOUT_S")
    elif status in (400, 404) and "snapshot" in lowered:
        hint = (f"snapshot {settings.daytona_snapshot!r} is not usable: run "
                "`fleet daytona snapshot`, or unset FLEET_DAYTONA_SNAPSHOT")
    else:
        hint = None
    return SandboxError(f"Daytona could not {action}: {text}" + (f". {hint}" if hint else ""))


def _unreachable(exc: BaseException) -> bool:
    """Whether the API could not be reached at all (the SDK does not always say so itself)."""
    import httpx
    import urllib3

    kinds = (_sdk().DaytonaConnectionError, ConnectionError, urllib3.exceptions.MaxRetryError,
             urllib3.exceptions.NewConnectionError, httpx.ConnectError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retrying(call: Callable[[], T]) -> T:
    sdk = _sdk()
    attempt = 0
    while True:
        try:
            return call()
        except (sdk.DaytonaRateLimitError, sdk.DaytonaServiceUnavailableError) as exc:
            if attempt >= RETRIES or "quota" in str(exc).lower():
                raise
            time.sleep(_retry_delay(exc, attempt))
            attempt += 1


def _retry_delay(exc: Any, attempt: int) -> float:
    headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
    try:
        return min(float(headers["retry-after"]), RETRY_MAX_S)
    except (KeyError, ValueError):
        return min(RETRY_BASE_S * 2**attempt, RETRY_MAX_S)


def snapshot_name() -> str:
    """The snapshot name for this version of the driver; a changed driver gets a new one."""
    return SNAPSHOT_PREFIX + hashlib.sha256(DRIVER_SOURCE.read_bytes()).hexdigest()[:12]


def snapshot_image() -> Any:
    """A Python image with driver.py baked in (inline, so no build context to upload) and a
    writable /work."""
    encoded = base64.b64encode(DRIVER_SOURCE.read_bytes()).decode("ascii")
    directory = os.path.dirname(SNAPSHOT_DRIVER)
    return _sdk().Image.base(SNAPSHOT_BASE_IMAGE).run_commands(
        f"mkdir -p -m 1777 {WORK_DIR} && mkdir -p {directory} "
        f"&& echo {encoded} | base64 -d > {SNAPSHOT_DRIVER} && chmod 644 {SNAPSHOT_DRIVER} "
        f"&& python3 -I -m py_compile {SNAPSHOT_DRIVER}")


def create_snapshot(settings: Settings, on_logs: Callable[[str], None] | None = None
                    ) -> tuple[str, bool]:
    """Create this driver's snapshot. Returns (name, created); False when it already existed."""
    sdk = _sdk()
    name = snapshot_name()
    try:
        client(settings).snapshot.create(
            sdk.CreateSnapshotParams(name=name, image=snapshot_image()), on_logs=on_logs)
    except sdk.DaytonaConflictError:
        return name, False
    except sdk.DaytonaError as exc:
        raise explain(exc, settings, f"create snapshot {name}") from None
    return name, True


def gc(settings: Settings, turns: Iterable[str] | None = None) -> list[str]:
    """Delete fleet-rlm sandboxes (all, or those of `turns`); return the ids deleted."""
    sdk = _sdk()
    daytona = client(settings)
    queries = ([{LABEL: "true"}] if turns is None
               else [{LABEL: "true", f"{LABEL}-turn": turn} for turn in turns])
    deleted: list[str] = []
    try:
        for labels in queries:
            for sandbox in list(daytona.list(sdk.ListSandboxesQuery(labels=labels))):
                if sandbox.state in (sdk.SandboxState.DESTROYED, sdk.SandboxState.DESTROYING):
                    continue
                _retrying(sandbox.delete)
                deleted.append(sandbox.id)
    except sdk.DaytonaError as exc:
        raise explain(exc, settings, "delete sandboxes") from None
    return deleted


class _Input:
    """The driver's stdin for DriverSession: each flush is one send_session_command_input."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send, self._pending = send, bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        return len(data)

    def flush(self) -> None:
        if not self._pending:
            return
        text = self._pending.decode("utf-8")
        self._pending.clear()
        try:
            _retrying(lambda: self._send(text))
        except _sdk().DaytonaError as exc:  # DriverSession reads an OSError as "process gone"
            raise BrokenPipeError(f"cannot send to the driver: {exc}") from exc


class _SessionChannel:
    """The driver's stdin and stdout over one Daytona session command."""

    def __init__(self, process: Any, session_id: str, command_id: str,
                 closing: Callable[[], bool]) -> None:
        self._process, self.session_id, self.command_id = process, session_id, command_id
        self._closing = closing
        read_end, write_end = os.pipe()
        self.stdout = os.fdopen(read_end, "rb")
        self._sink = os.fdopen(write_end, "wb")
        self.stdin = _Input(lambda text: process.send_session_command_input(
            session_id, command_id, text))
        self.stderr_tail = ""
        self.ended = False
        self._delivered = 0  # stdout characters passed on; a reconnect replays from the start
        threading.Thread(target=self._pump, daemon=True,
                         name=f"daytona-driver-{session_id}").start()

    def _pump(self) -> None:
        sdk = _sdk()
        quiet = 0
        try:
            while not self._closing():
                before = self._delivered
                received = 0

                def on_stdout(text: str) -> None:
                    nonlocal received
                    start, received = received, received + len(text)
                    fresh = text[max(0, self._delivered - start):]
                    if fresh:
                        self._sink.write(fresh.encode("utf-8"))
                        self._sink.flush()
                        self._delivered += len(fresh)

                try:
                    asyncio.run(self._process.get_session_command_logs_async(
                        self.session_id, self.command_id, on_stdout, self._on_stderr))
                except (sdk.DaytonaError, OSError) as exc:
                    log.debug("driver output stream of %s ended: %s", self.session_id, exc)
                quiet = 0 if self._delivered > before else quiet + 1
                if self._closing() or quiet > MAX_RECONNECTS or not self._running():
                    return
                log.info("driver output stream of %s dropped; reconnecting", self.session_id)
                time.sleep(0.2 * quiet)
        finally:
            with contextlib.suppress(OSError):
                self._sink.close()

    def _on_stderr(self, text: str) -> None:
        self.stderr_tail = (self.stderr_tail + text)[-2000:]

    def _running(self) -> bool:
        try:
            command = self._process.get_session_command(self.session_id, self.command_id)
        except _sdk().DaytonaError:
            return False
        return command.exit_code is None


class DaytonaSandbox:
    """A Sandbox running driver.py in a Daytona sandbox (see the module docstring)."""

    def __init__(self, settings: Settings | None = None, *,
                 labels: dict[str, str] | None = None) -> None:
        self.settings = settings or Settings()
        extra = {**_labels.get(), **(labels or {})}
        self.labels = {LABEL: "true", **{f"{LABEL}-{k}": v for k, v in extra.items() if v}}
        self.sandbox: Any = None  # the SDK's Sandbox
        self._session: DriverSession | None = None
        self._channel: _SessionChannel | None = None
        self._work_dir: str | None = None
        self._driver_path: str | None = None
        self._session_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        sdk = _sdk()
        with self._lock:
            if self._session is not None and self._session.alive:
                return
            self._closing = False
            if self._session is not None:  # the driver died: a new process, same sandbox
                self._session.kill()
                self._session = self._channel = None
            try:
                if self.sandbox is not None and not self._still_running():
                    self._discard()
                fresh = self.sandbox is None
                if fresh:
                    self.sandbox = self._create()
                try:
                    self._spawn()
                except (sdk.DaytonaError, SandboxError):
                    if fresh:  # a sandbox whose driver can't start is of no use: don't keep it
                        self._discard()
                    raise
            except sdk.DaytonaError as exc:
                raise explain(exc, self.settings, "start the sandbox") from None

    def _still_running(self) -> bool:
        sdk = _sdk()
        try:
            self.sandbox.refresh_data()
        except sdk.DaytonaNotFoundError:
            return False
        if self.sandbox.state == sdk.SandboxState.STARTED:
            return True
        log.warning("Daytona sandbox %s is %s; starting a new one", self.sandbox.id,
                    self.sandbox.state)
        return False

    def _discard(self) -> None:
        sandbox, self.sandbox, self._work_dir = self.sandbox, None, None
        with contextlib.suppress(_sdk().DaytonaError):  # auto-delete and gc are the fallback
            sandbox.delete()

    def _create(self) -> Any:
        sdk = _sdk()
        s = self.settings
        params = sdk.CreateSandboxFromSnapshotParams(
            snapshot=s.daytona_snapshot, language="python", labels=dict(self.labels),
            # A sandbox waiting on a child run looks idle: it must outlive the turn.
            auto_stop_interval=max(s.daytona_auto_stop_minutes, math.ceil(s.max_wall_s / 60)),
            auto_delete_interval=s.daytona_auto_delete_minutes,
            network_block_all=s.daytona_network_block_all)
        daytona = client(s)
        try:
            return _retrying(lambda: daytona.create(params, timeout=s.daytona_create_timeout_s))
        except sdk.DaytonaTimeoutError as exc:
            if getattr(exc, "sandbox_id", None):  # created but never started: don't leave it
                with contextlib.suppress(sdk.DaytonaError):
                    daytona.get(exc.sandbox_id).delete()
            raise

    def _spawn(self) -> None:
        sdk = _sdk()
        s = self.settings
        process = self.sandbox.process
        if self._work_dir is None:
            self._work_dir = self.sandbox.get_work_dir().rstrip("/")
            self._driver_path = self._install_driver()
        session_id = f"fleet-driver-{next(self._session_ids)}"
        process.create_session(session_id)
        # Without /work (no snapshot) the driver runs in the sandbox user's home.
        command = (f"cd {WORK_DIR} 2>/dev/null; python3 -I {shlex.quote(self._driver_path)} "
                   f"--memory-mb {s.sandbox_memory_mb}")
        response = process.execute_session_command(session_id, sdk.SessionExecuteRequest(
            command=command, run_async=True, suppress_input_echo=True))
        channel = _SessionChannel(process, session_id, response.cmd_id, lambda: self._closing)
        self._channel = channel
        self._session = DriverSession(
            channel.stdin, channel.stdout, kill=lambda: self._end_process(channel),
            put_file=self._put_file, max_output=s.max_output_chars,
            kill_grace_s=s.exec_kill_grace_s)
        try:
            self._session.wait_ready(timeout=s.daytona_create_timeout_s)
        except SandboxError as exc:
            self._session.kill()
            self._session = self._channel = None
            raise SandboxError(f"{exc}; driver stderr: {channel.stderr_tail.strip() or '(empty)'}"
                               ) from None

    def _install_driver(self) -> str:
        snapshot = self.settings.daytona_snapshot
        if snapshot == snapshot_name():
            return SNAPSHOT_DRIVER
        if snapshot and snapshot.startswith(SNAPSHOT_PREFIX):
            log.warning("snapshot %s carries another version of the driver; uploading this one "
                        "(`fleet daytona snapshot` builds %s)", snapshot, snapshot_name())
        path = f"{self._work_dir}/.fleet/driver.py"
        _retrying(lambda: self.sandbox.fs.upload_file(DRIVER_SOURCE.read_bytes(), path))
        return path

    def _end_process(self, channel: _SessionChannel) -> None:
        if self._closing or self.sandbox is None or channel.ended:  # sandbox deletion ends it
            return
        channel.ended = True
        with contextlib.suppress(_sdk().DaytonaError):  # already gone is fine
            self.sandbox.process.delete_session(channel.session_id)

    def _put_file(self, name: str, data: bytes) -> str:
        sdk = _sdk()
        path = f"{self._work_dir}/.fleet/vars/{secrets.token_hex(4)}-{name}"
        try:
            _retrying(lambda: self.sandbox.fs.upload_file(data, path))
        except sdk.DaytonaError as exc:
            raise explain(exc, self.settings, f"upload variable file {name}") from None
        return path

    # -- operations -------------------------------------------------------------------------
    def _live(self) -> DriverSession:
        if self._session is None or not self._session.alive:
            self.start()
        assert self._session is not None
        return self._session

    @property
    def alive(self) -> bool:
        return self._session is not None and self._session.alive

    @property
    def sandbox_id(self) -> str | None:
        return self.sandbox.id if self.sandbox is not None else None

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

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if self._session is not None:
                self._session.kill()
                self._session = self._channel = None
            sandbox, self.sandbox, self._work_dir = self.sandbox, None, None
        if sandbox is None:
            return
        sdk = _sdk()
        try:
            _retrying(sandbox.delete)
        except sdk.DaytonaNotFoundError:
            pass  # already gone
        except sdk.DaytonaError as exc:
            log.warning("could not delete Daytona sandbox %s (%s); its auto-delete or "
                        "`fleet daytona gc` will", sandbox.id, exc)

    def __enter__(self) -> DaytonaSandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
