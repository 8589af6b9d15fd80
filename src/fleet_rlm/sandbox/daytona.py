"""Daytona backend: the same driver.py as a long-lived process in a Daytona sandbox.

One Daytona sandbox per `DaytonaSandbox`, so one per RLM node. `start()` creates it (from
FLEET_DAYTONA_SNAPSHOT when that snapshot carries this version of the driver, else from
Daytona's default snapshot with driver.py uploaded) and runs the driver as an asynchronous
command of a Daytona session. The host speaks the driver's JSON-lines protocol to it through
the shared `DriverSession`, exactly as the local backend does.

The driver's byte streams run over a session command (see daytona_channel.py for why).

Large values go up with the SDK's file upload and the driver reads them from the file. An
interrupt is the protocol's `{"op": "interrupt"}`. A kill deletes the session, which ends the
process. `close()` deletes the sandbox. Nothing leaks: every sandbox carries the `fleet-rlm`
label (plus session/turn/node when known), stops after `daytona_auto_stop_minutes` without
activity and is deleted once stopped (`daytona_auto_delete_minutes`, default 0), and
`fleet daytona gc` deletes whatever is left.

Sessions. A session's own sandbox (the agent's `python` tool) mounts the session's Daytona
volume, `fleet-rlm-<session id>` (made on first use), at /work, laid out like the local
workspace (memory/, artifacts/, buffers/, meta/), so its files and its saved variables
(meta/namespace.pkl) outlive any one sandbox. That sandbox is kept across turns and checked
before each call: one Daytona stopped is started again, one that is gone (deleted once stopped,
by gc, by hand) is replaced by a new one on the same volume, and a new process finds the one
an earlier process left by its labels. A driver that replaces an earlier one first runs the
session's `restore` code, which loads the saved variables: the session goes on where it was.
Daytona mounts a volume with mount-s3, so a file there is written whole or replaced, never
appended to or renamed; the saved variables are written whole. The REST routes browse the
volume through this sandbox (daytona_workspace.py); deleting the session deletes the sandbox
and the volume (daytona_admin.delete_session_volume).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import math
import secrets
import shlex
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from .base import (
    DRIVER_SOURCE,
    DriverBackedSandbox,
    DriverSession,
    SandboxError,
)
from .daytona_admin import (
    LABEL,
    SNAPSHOT_DRIVER,
    SNAPSHOT_PREFIX,
    WORK_DIR,
    client,
    explain,
    session_volume,
    snapshot_name,
)
from .daytona_admin import retrying as _retrying
from .daytona_admin import sdk as _sdk
from .daytona_channel import SessionChannel

log = logging.getLogger(__name__)

VOLUME_POLL_S = 1.0

_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "fleet_daytona_labels", default={})  # noqa: B039 - never mutated, only replaced


@contextlib.contextmanager
def sandbox_labels(**labels: str | None) -> Iterator[None]:
    """Label the Daytona sandboxes created in this context, e.g. session=, turn=, node=."""
    token = _labels.set({**_labels.get(), **{k: v for k, v in labels.items() if v}})
    try:
        yield
    finally:
        _labels.reset(token)


class DaytonaSandbox(DriverBackedSandbox):
    """A Sandbox running driver.py in a Daytona sandbox (see the module docstring)."""

    def __init__(self, settings: Settings | None = None, *,
                 labels: dict[str, str] | None = None, volume: str | None = None,
                 work_dirs: Iterable[str] = (), restore: str | None = None) -> None:
        """`volume`: a Daytona volume (made if missing) mounted at /work with `work_dirs` in
        it; such a sandbox is kept, started again, or replaced on the same volume, and each
        driver that replaces an earlier one runs `restore` first."""
        self.settings = settings or Settings()
        extra = {**_labels.get(), **(labels or {}), "volume": volume}
        self.labels = {LABEL: "true", **{f"{LABEL}-{k}": v for k, v in extra.items() if v}}
        self.volume, self.work_dirs, self.restore = volume, tuple(work_dirs), restore
        self.sandbox: Any = None  # the SDK's Sandbox
        self._session: DriverSession | None = None
        self._channel: SessionChannel | None = None
        self._work_dir: str | None = None
        self._driver_path: str | None = None
        # Session names unique per object: a kept sandbox may still run an earlier one's driver.
        self._session_names = (f"fleet-driver-{secrets.token_hex(3)}-{n}"
                               for n in itertools.count(1))
        self._drivers = 0
        self._lock = threading.Lock()
        self._closing = False

    @classmethod
    def for_session(cls, settings: Settings, labels: dict[str, str], work_dir: Path | None,
                    restore: str | None = None) -> DaytonaSandbox:
        """The session's own sandbox: its workspace on the session's volume, laid out as the
        local `work_dir` is."""
        layout = sorted(p.name for p in work_dir.iterdir() if p.is_dir()) if work_dir else ()
        return cls(settings, labels=labels, volume=session_volume(labels["session"]),
                   work_dirs=layout, restore=restore)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        sdk = _sdk()
        with self._lock:
            try:
                self._start()
            except sdk.DaytonaError as exc:
                raise explain(exc, self.settings, "start the sandbox") from None

    def _start(self) -> None:
        sdk = _sdk()
        # A kept sandbox may have been stopped or deleted since the last call: one GET says.
        running = self.sandbox is not None and (self.volume is None or self._started())
        if running and self._session is not None and self._session.alive:
            return
        self._closing = False
        if self._session is not None:  # the driver died, or its sandbox stopped or went
            if not running and self._channel is not None:  # there is no process left to end
                self._channel.ended = True
            self._session.kill()
            self._session = self._channel = None
        fresh = self._provision()
        try:
            self._spawn()
        except (sdk.DaytonaError, SandboxError):
            if fresh:  # a sandbox whose driver can't start is of no use: don't keep it
                self._discard()
            raise
        self._drivers += 1
        if self._drivers > 1 and self.restore:
            assert self._session is not None  # made by _spawn
            result = self._session.execute(self.restore, self.settings.exec_timeout_s, None, None)
            if not result.ok:
                log.warning("the new driver in Daytona sandbox %s could not restore the saved "
                            "state: %s", self.sandbox.id, result.error_message)

    def _started(self) -> bool:
        sdk = _sdk()
        try:
            self.sandbox.refresh_data()
        except sdk.DaytonaNotFoundError:
            return False
        return self.sandbox.state == sdk.SandboxState.STARTED

    def _provision(self) -> bool:
        """Make `self.sandbox` a started sandbox; True when it was created just now."""
        if self.sandbox is None and self.volume is not None:
            self.sandbox = self._find()
        if self.sandbox is not None and not self._bring_up():
            self._discard()
        if self.sandbox is None:
            self.sandbox = self._create()
            return True
        return False

    def _find(self) -> Any:
        """The sandbox of this volume that an earlier object (or process) left, if any."""
        sdk = _sdk()
        state = sdk.SandboxState
        query = sdk.ListSandboxesQuery(labels={LABEL: "true", f"{LABEL}-volume": self.volume})
        found = [s for s in client(self.settings).list(query) if s.state not in (
            state.DESTROYED, state.DESTROYING, state.ERROR, state.BUILD_FAILED)]
        found.sort(key=lambda s: s.state != state.STARTED)
        return found[0] if found else None

    def _bring_up(self) -> bool:
        """Whether `self.sandbox` is started, or (a kept one) could be started again."""
        sdk = _sdk()
        state = sdk.SandboxState
        try:
            self.sandbox.refresh_data()
        except sdk.DaytonaNotFoundError:
            return False
        current = self.sandbox.state
        if current == state.STARTED:
            return True
        if self.volume is None or current not in (state.STOPPED, state.ARCHIVED, state.STARTING,
                                                  state.RESTORING):
            log.warning("Daytona sandbox %s is %s; starting a new one", self.sandbox.id,
                        current.value)
            return False
        log.info("Daytona sandbox %s is %s; starting it again", self.sandbox.id, current.value)
        timeout = self.settings.daytona_create_timeout_s
        try:
            if current in (state.STOPPED, state.ARCHIVED):
                _retrying(lambda: self.sandbox.start(timeout=timeout))
            else:
                self.sandbox.wait_for_sandbox_start(timeout=timeout)
        except sdk.DaytonaError as exc:  # the volume holds what matters: a new one will do
            log.warning("Daytona sandbox %s did not start again (%s); starting a new one",
                        self.sandbox.id, exc)
            return False
        return True

    def _discard(self) -> None:
        sandbox, self.sandbox, self._work_dir = self.sandbox, None, None
        with contextlib.suppress(_sdk().DaytonaError):  # auto-delete and gc are the fallback
            sandbox.delete()

    def _create(self) -> Any:
        sdk = _sdk()
        s = self.settings
        volumes = ([sdk.VolumeMount(volume_id=self._ready_volume(), mount_path=WORK_DIR)]
                   if self.volume else None)
        params = sdk.CreateSandboxFromSnapshotParams(
            snapshot=s.daytona_snapshot, language="python", labels=dict(self.labels),
            # A sandbox waiting on a child run looks idle: it must outlive the turn.
            auto_stop_interval=max(s.daytona_auto_stop_minutes, math.ceil(s.max_wall_s / 60)),
            auto_delete_interval=s.daytona_auto_delete_minutes,
            network_block_all=s.daytona_network_block_all, volumes=volumes)
        daytona = client(s)
        try:
            return _retrying(lambda: daytona.create(params, timeout=s.daytona_create_timeout_s))
        except sdk.DaytonaTimeoutError as exc:
            if getattr(exc, "sandbox_id", None):  # created but never started: don't leave it
                with contextlib.suppress(sdk.DaytonaError):
                    daytona.get(exc.sandbox_id).delete()
            raise

    def _ready_volume(self) -> str:
        """The id of this sandbox's volume, made if missing, once Daytona has it ready."""
        volumes = client(self.settings).volume
        timeout = self.settings.daytona_create_timeout_s
        deadline = time.monotonic() + timeout
        volume = _retrying(lambda: volumes.get(self.volume, create=True))
        while volume.state.value != "ready":
            if volume.state.value not in ("pending_create", "creating"):
                raise SandboxError(f"Daytona volume {self.volume} is {volume.state.value}"
                                   + (f": {volume.error_reason}" if volume.error_reason else ""))
            if time.monotonic() > deadline:
                raise SandboxError(f"Daytona volume {self.volume} was not ready within "
                                   f"{timeout:g} s: retry, or raise "
                                   "FLEET_DAYTONA_CREATE_TIMEOUT_S")
            time.sleep(VOLUME_POLL_S)
            volume = _retrying(lambda: volumes.get(self.volume))
        return volume.id

    def _spawn(self) -> None:
        sdk = _sdk()
        s = self.settings
        process = self.sandbox.process
        if self._work_dir is None:
            self._work_dir = self.sandbox.get_work_dir().rstrip("/")
            self._driver_path = self._install_driver()
        assert self._driver_path is not None  # installed with the work dir
        session_id = next(self._session_names)
        process.create_session(session_id)
        layout = " ".join(shlex.quote(f"{WORK_DIR}/{name}") for name in self.work_dirs)
        # Without /work (no snapshot, no volume) the driver runs in the sandbox user's home.
        command = ((f"mkdir -p {layout}; " if layout else "")
                   + f"cd {WORK_DIR} 2>/dev/null; python3 -I {shlex.quote(self._driver_path)} "
                   f"--memory-mb {s.sandbox_memory_mb}")
        response = process.execute_session_command(session_id, sdk.SessionExecuteRequest(
            command=command, run_async=True, suppress_input_echo=True))
        channel = SessionChannel(process, session_id, response.cmd_id, lambda: self._closing)
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

    def _end_process(self, channel: SessionChannel) -> None:
        if self._closing or self.sandbox is None or channel.ended:  # sandbox deletion ends it
            return
        channel.ended = True
        with contextlib.suppress(_sdk().DaytonaError):  # already gone is fine
            self.sandbox.process.delete_session(channel.session_id)

    def _put_file(self, name: str, chunks: Iterable[bytes]) -> str:
        """Uploaded whole: the SDK takes bytes. Values leaving the sandbox cross inline (no
        outbox: the host reads nothing of a Daytona sandbox but through its API)."""
        sdk = _sdk()
        data = b"".join(chunks)
        path = f"{self._work_dir}/.fleet/vars/{secrets.token_hex(4)}-{name}"
        try:
            _retrying(lambda: self.sandbox.fs.upload_file(data, path))
        except sdk.DaytonaError as exc:
            raise explain(exc, self.settings, f"upload variable file {name}") from None
        return path

    # -- operations -------------------------------------------------------------------------
    def files(self) -> Any:
        """The SDK's file system of this sandbox, started if need be: for a session's sandbox,
        the session's volume at /work."""
        self.start()
        sandbox = self.sandbox
        if sandbox is None:  # closed meanwhile: its session was deleted
            raise SandboxError("the sandbox was closed")
        return sandbox.fs

    def _live(self) -> DriverSession:
        if self.volume is not None or not self.alive:  # start() checks a kept sandbox
            self.start()
        assert self._session is not None
        return self._session

    @property
    def alive(self) -> bool:
        return self._session is not None and self._session.alive

    @property
    def sandbox_id(self) -> str | None:
        return self.sandbox.id if self.sandbox is not None else None

    def close(self) -> None:
        """Delete the sandbox (a session's volume stays)."""
        with self._lock:
            self._closing = True
            if self._session is not None:
                self._session.stopping = True
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
