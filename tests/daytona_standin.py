"""A local stand-in of the Daytona HTTP API, for tests of the Daytona backend.

It serves the endpoints that fleet-rlm's Daytona backend reaches through the real SDK (read from
the SDK's generated clients, `daytona_api_client` and `daytona_toolbox_api_client`):

  control plane, {api_url} = http://127.0.0.1:PORT/api
    POST   /sandbox                 create (body parsed as CreateSandbox), volumes mounted
    GET    /sandbox/{id}            state ("starting" for the first polls, if asked to)
    POST   /sandbox/{id}/stop       stopped: processes killed, files kept; deleted at once
                                    when its auto-delete interval is 0, as Daytona does
    POST   /sandbox/{id}/start      started again
    DELETE /sandbox/{id}
    GET    /sandbox?labels=...      list (ListSandboxesResponse)
    POST   /snapshots, GET /snapshots/{id or name}
    POST   /volumes, GET /volumes, GET /volumes/by-name/{name}
    DELETE /volumes/{id}            only a ready (or failed) volume no live sandbox mounts
    GET    /regions                 the targets (us, eu)
    WS     /socket.io/              refused, so the SDK watches states by polling
  toolbox, {toolboxProxyUrl}/{sandbox id} = http://127.0.0.1:PORT/toolbox/{id}
    GET    /work-dir
    POST   /files/bulk-upload       multipart, parent directories created like the daemon does
    GET    /files?path=             list a directory (FileInfo, links followed as os.Stat does)
    GET    /files/info?path=        one FileInfo
    POST   /files/bulk-download     the files as multipart parts ("file", or "error" with the
                                    daemon's JSON error), as the daemon streams them
    DELETE /files?path=&recursive=  a file, or a directory only with recursive=true
    POST   /process/session                              create a session
    POST   /process/session/{s}/exec                     start a command (runAsync only)
    POST   /process/session/{s}/command/{c}/input        write to the command's stdin
    WS     /process/session/{s}/command/{c}/logs?follow=true    its prefixed output
    GET    /process/session/{s}/command/{c}              its exit code
    DELETE /process/session/{s}                          kill its commands

Requests are parsed and replies built with the SDK's own pydantic models. Any other request is
recorded in `unexpected` and answered 404. Each sandbox is a directory on this machine and each
session command a local subprocess, `/bin/sh -c COMMAND` under bubblewrap, so the driver really
runs (`python3 -I driver.py`) and sees a filesystem of its own: this machine's runtime
(read-only), the sandbox's directory, and what the sandbox mounts at its own paths. Those are
a snapshot's files (from its Dockerfile's `echo BASE64 | base64 -d > PATH` and
`mkdir -p -m MODE DIR`) and its volumes: each volume is a directory on this machine, so what
one sandbox writes to /work is there for the next sandbox that mounts the volume. As in the
daemon, output reaches the log one line at a time, each line prefixed with \\x01\\x01\\x01
(stdout) or \\x02\\x02\\x02 (stderr), and input is echoed into the log unless
suppressInputEcho. The toolbox of a sandbox that is not started answers 400.

The toolbox's file calls see what the sandbox sees (its directory, a volume at /work), and
only that: a path whose links lead elsewhere on this machine is not found.

`fail(method, path, status, message)` makes the next matching request fail. `created`,
`deleted` and `live()` count sandboxes, and `live_volumes()` lists the volumes, so a test can
check that none leaked.

The fixtures at the end (`standin`, `settings`, `quick_polls`, and `cli_env` for the CLI) are
shared by the Daytona tests: each test module binds them to names of its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from daytona_api_client.models import (
    CreateSandbox,
    CreateSnapshot,
    CreateVolume,
    ListSandboxesResponse,
    Region,
    RegionType,
    Sandbox,
    SandboxListItem,
    SandboxState,
    SandboxVolume,
    SnapshotDto,
    SnapshotState,
    ToolboxProxyUrl,
    VolumeDto,
    VolumeState,
)
from daytona_toolbox_api_client.models import (
    Command,
    CreateSessionRequest,
    FileInfo,
    FilesDownloadRequest,
    SessionExecuteRequest,
    SessionExecuteResponse,
    SessionSendInputRequest,
    WorkDirResponse,
)
from fastapi import FastAPI, Request, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from fleet_rlm.config import Settings

STDOUT_PREFIX = b"\x01\x01\x01"
STDERR_PREFIX = b"\x02\x02\x02"
TARGETS = ("us", "eu")
IMAGE_FILE = re.compile(r"echo ([A-Za-z0-9+/=]+) \| base64 -d > (\S+)")
IMAGE_DIR = re.compile(r"mkdir -p -m \d+ (\S+)")
RUNTIME = ("/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc")
DAEMON = "DAYTONA_DAEMON"
DOWNLOAD_BOUNDARY = "DAYTONA-FILE-BOUNDARY"


@dataclass
class StandInCommand:
    id: str
    command: str
    process: subprocess.Popen
    suppress_echo: bool
    log: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    drops: int = 0  # bumped to cut the log streams open at that moment
    changed: threading.Condition = field(default_factory=threading.Condition)

    def append(self, data: bytes) -> None:
        with self.changed:
            self.log += data
            self.changed.notify_all()

    def finish(self, code: int) -> None:
        with self.changed:
            if self.exit_code is None:
                self.exit_code = code
            self.changed.notify_all()

    def read_from(self, offset: int, drops: int, timeout: float) -> tuple[bytes, bool, bool]:
        """(new log bytes, command ended, stream to be dropped)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.log) > offset or self.exit_code is not None
                                  or self.drops != drops, timeout)
            return bytes(self.log[offset:]), self.exit_code is not None, self.drops != drops

    def drop_streams(self) -> None:
        with self.changed:
            self.drops += 1
            self.changed.notify_all()

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class StandInSandbox:
    dto: Sandbox
    root: Path
    work_dir: Path
    mounts: dict[str, Path]  # a path inside the sandbox -> the file or directory it shows
    polls_left: int
    sessions: dict[str, dict[str, StandInCommand]] = field(default_factory=dict)
    deleted: bool = False

    def commands(self) -> list[StandInCommand]:
        return [c for session in self.sessions.values() for c in session.values()]

    def kill_all(self) -> None:
        for command in self.commands():
            command.kill()
            command.finish(-9)
        self.sessions.clear()

    def host_path(self, path: str) -> Path | None:
        """Where a path inside the sandbox is on this machine; None outside what it can see."""
        for inside, host in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if path == inside or path.startswith(inside.rstrip("/") + "/"):
                return host / path[len(inside):].lstrip("/")
        target = Path(path)
        return target if target.resolve().is_relative_to(self.root) else None

    def visible(self, path: str) -> Path | None:
        """The file the toolbox finds at `path` (relative: to the work dir), links followed:
        None when it leads outside what the sandbox sees."""
        host = self.host_path(path if path.startswith("/") else f"{self.work_dir}/{path}")
        if host is None:
            return None
        seen = [self.root, *self.mounts.values()]
        resolved = host.resolve()
        return host if any(resolved.is_relative_to(top.resolve()) for top in seen) else None

    def argv(self, command: str) -> list[str]:
        """The command under bubblewrap, seeing the filesystem this sandbox would."""
        args = ["bwrap", "--die-with-parent", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp"]
        for top in RUNTIME:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--bind", str(self.root), str(self.root)]
        for inside, host in sorted(self.mounts.items()):
            args += ["--bind", str(host), inside]
        return [*args, "--chdir", str(self.work_dir), "/bin/sh", "-c", command]


@dataclass
class StandInVolume:
    dto: VolumeDto
    path: Path


@dataclass
class _Failure:
    method: str
    path: re.Pattern
    status: int
    message: str
    times: int
    headers: dict[str, str]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _reply(model: Any) -> JSONResponse:
    """A reply as the SDK's model serialises it (dates as ISO strings)."""
    return JSONResponse(jsonable_encoder(model.to_dict()))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message, "error": message},
                        status_code=status, headers=headers)


class DaytonaStandIn:
    def __init__(self, api_key: str = "standin-key", *, polls_until_started: int = 0) -> None:
        """`polls_until_started`: how many times a new sandbox answers "starting" first."""
        self.api_key = api_key
        self.polls_until_started = polls_until_started
        self.sandboxes: dict[str, StandInSandbox] = {}
        self.snapshots: dict[str, SnapshotDto] = {}
        self.snapshot_files: dict[str, dict[str, bytes]] = {}
        self.snapshot_dirs: dict[str, list[str]] = {}
        self.volumes: dict[str, StandInVolume] = {}  # by id
        self.create_requests: list[CreateSandbox] = []
        self.requests: list[str] = []
        self.unexpected: list[str] = []
        self.created = self.deleted = self.started = 0
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._root = Path(tempfile.mkdtemp(prefix="daytona-standin-"))
        self._waiters = ThreadPoolExecutor(64, thread_name_prefix="standin-logs")
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- running ----------------------------------------------------------------------------
    def start(self) -> DaytonaStandIn:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True, name="daytona-standin")
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the Daytona stand-in did not start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        with self._lock:
            for box in self.sandboxes.values():
                box.kill_all()
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._waiters.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> DaytonaStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    # -- for tests --------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int, message: str = "injected failure", *,
             times: int = 1, headers: dict[str, str] | None = None) -> None:
        """The next `times` requests whose path matches the regex `path` get `status`."""
        with self._lock:
            self._failures.append(_Failure(method, re.compile(path), status, message, times,
                                           headers or {}))

    def live(self) -> list[str]:
        with self._lock:
            return [i for i, box in self.sandboxes.items() if not box.deleted]

    def running_commands(self, sandbox_id: str) -> list[StandInCommand]:
        with self._lock:
            return [c for c in self.sandboxes[sandbox_id].commands() if c.exit_code is None]

    def live_volumes(self) -> list[str]:
        with self._lock:
            return sorted(v.dto.name for v in self.volumes.values())

    def count(self, pattern: str) -> int:
        """How many requests matched the regex `pattern` ("METHOD /path")."""
        return sum(1 for r in self.requests if re.search(pattern, r))

    def volume_dir(self, name: str) -> Path:
        """The directory on this machine behind the volume `name`."""
        return self._volume(name).path

    def _volume(self, id_or_name: str) -> StandInVolume | None:
        with self._lock:
            for volume in self.volumes.values():
                if id_or_name in (volume.dto.id, volume.dto.name):
                    return volume
        return None

    # -- the app ----------------------------------------------------------------------------
    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.times > 0 and failure.method == method and failure.path.search(path):
                    failure.times -= 1
                    return failure
        return None

    def _box(self, sandbox_id: str, *, started: bool = False) -> StandInSandbox | None:
        """A sandbox not deleted (and, for the toolbox, started)."""
        with self._lock:
            box = self.sandboxes.get(sandbox_id)
            if box is None or box.deleted:
                return None
            return None if started and box.dto.state != SandboxState.STARTED else box

    def _stat(self, sandbox_id: str, path: str) -> Path | Response:
        """The host file behind `path` in a started sandbox, or the daemon's error for a stat of
        it (not started, no path, nothing there)."""
        box = self._box(sandbox_id, started=True)
        if box is None:
            return _not_running(sandbox_id)
        if not path:
            return _daemon_error(400, "BAD_REQUEST", "path is required")
        target = box.visible(path)
        if target is None or not target.exists():
            return _daemon_error(404, "FILE_NOT_FOUND", f"stat {path}: no such file or directory")
        return target

    def _delete(self, box: StandInSandbox) -> None:
        with self._lock:
            box.deleted = True
            self.deleted += 1
        box.kill_all()
        shutil.rmtree(box.root, ignore_errors=True)
        box.dto.state = SandboxState.DESTROYING

    def _build_app(self) -> FastAPI:  # noqa: C901 - one closure per endpoint
        app = FastAPI()
        toolbox = "/toolbox/{sandbox_id}"

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            path = request.url.path
            self.requests.append(f"{request.method} {path}")
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "Invalid credentials")
            failure = self._take_failure(request.method, path)
            if failure is not None:
                return _error(failure.status, failure.message, failure.headers)
            return await call_next(request)

        # -- control plane ------------------------------------------------------------------
        @app.post("/api/sandbox")
        async def create_sandbox(request: Request) -> Response:
            body = await request.json()
            spec = CreateSandbox.from_dict(body)
            if spec.additional_properties:
                self.unexpected.append(f"create fields {sorted(spec.additional_properties)}")
            if spec.target is not None and spec.target not in TARGETS:
                return _error(400, f"Region {spec.target!r} is not available to the "
                              "organization")
            if spec.snapshot is not None and spec.snapshot not in self.snapshots:
                return _error(404, f"Snapshot {spec.snapshot} not found")
            mounted = []
            for mount in spec.volumes or []:
                volume = self._volume(mount.volume_id)
                if volume is None:
                    return _error(404, f"Volume {mount.volume_id} not found")
                if volume.dto.state != VolumeState.READY:
                    return _error(400, f"Volume {volume.dto.name} is not in a ready state "
                                  f"({volume.dto.state.value})")
                mounted.append((mount, volume))
            sandbox_id = str(uuid.uuid4())
            root = self._root / sandbox_id
            work_dir = root / "home" / "daytona"
            work_dir.mkdir(parents=True)
            mounts = {}
            for path, content in self.snapshot_files.get(spec.snapshot or "", {}).items():
                local = root / "image" / path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(content)
                mounts[path] = local
            for path in self.snapshot_dirs.get(spec.snapshot or "", []):
                local = root / "image" / path.lstrip("/")
                local.mkdir(parents=True, exist_ok=True)
                mounts[path] = local
            for mount, volume in mounted:
                mounts[mount.mount_path] = volume.path / (mount.subpath or "")
                mounts[mount.mount_path].mkdir(parents=True, exist_ok=True)
            dto = Sandbox(
                id=sandbox_id, organization_id="org-standin", name=sandbox_id,
                snapshot=spec.snapshot or "daytonaio/sandbox:standin", user="daytona",
                env=spec.env or {}, labels=spec.labels or {}, public=bool(spec.public),
                network_block_all=bool(spec.network_block_all), kvm=False,
                target=spec.target or "us", cpu=1, gpu=0, memory=1, disk=3,
                state=SandboxState.STARTING if self.polls_until_started else SandboxState.STARTED,
                auto_stop_interval=spec.auto_stop_interval,
                auto_delete_interval=spec.auto_delete_interval,
                volumes=[SandboxVolume(volume_id=volume.dto.id, mount_path=mount.mount_path,
                                       subpath=mount.subpath) for mount, volume in mounted],
                toolbox_proxy_url=f"http://127.0.0.1:{self.port}/toolbox",
                created_at=_now(), updated_at=_now())
            with self._lock:
                self.create_requests.append(spec)
                self.sandboxes[sandbox_id] = StandInSandbox(dto, root, work_dir, mounts,
                                                            self.polls_until_started)
                self.created += 1
            return _reply(dto)

        @app.get("/api/sandbox/{sandbox_id}")
        def get_sandbox(sandbox_id: str) -> Response:
            box = self._box(sandbox_id)
            if box is None:
                return _error(404, f"Sandbox with ID or name {sandbox_id} not found")
            if box.polls_left == 0 and box.dto.state == SandboxState.STARTING:
                box.dto.state = SandboxState.STARTED
            box.polls_left = max(0, box.polls_left - 1)
            return _reply(box.dto)

        @app.post("/api/sandbox/{sandbox_id}/stop")
        def stop_sandbox(sandbox_id: str, force: bool = False) -> Response:
            box = self._box(sandbox_id)
            if box is None:
                return _error(404, f"Sandbox with ID or name {sandbox_id} not found")
            if box.dto.state != SandboxState.STARTED:
                return _error(400, f"Sandbox is not started (state: {box.dto.state.value})")
            box.kill_all()
            box.dto.state = SandboxState.STOPPED
            if box.dto.auto_delete_interval == 0:  # ephemeral: deleted once stopped
                self._delete(box)
            return _reply(box.dto)

        @app.post("/api/sandbox/{sandbox_id}/start")
        def start_sandbox(sandbox_id: str) -> Response:
            box = self._box(sandbox_id)
            if box is None:
                return _error(404, f"Sandbox with ID or name {sandbox_id} not found")
            if box.dto.state not in (SandboxState.STOPPED, SandboxState.ARCHIVED):
                return _error(400, f"Sandbox is not stopped (state: {box.dto.state.value})")
            box.polls_left = self.polls_until_started
            box.dto.state = (SandboxState.STARTING if self.polls_until_started
                             else SandboxState.STARTED)
            with self._lock:
                self.started += 1
            return _reply(box.dto)

        @app.delete("/api/sandbox/{sandbox_id}")
        def delete_sandbox(sandbox_id: str) -> Response:
            with self._lock:
                box = self._box(sandbox_id)
                if box is None:
                    return _error(404, f"Sandbox with ID or name {sandbox_id} not found")
                self._delete(box)
            return _reply(box.dto)

        @app.get("/api/sandbox")
        def list_sandboxes(labels: str | None = None) -> Response:
            wanted = json.loads(labels) if labels else {}
            with self._lock:
                boxes = [b for b in self.sandboxes.values() if not b.deleted
                         and wanted.items() <= b.dto.labels.items()]
            items = [SandboxListItem.from_dict(b.dto.to_dict()) for b in boxes]
            return _reply(ListSandboxesResponse(items=items, next_cursor=None))

        @app.get("/api/sandbox/{sandbox_id}/toolbox-proxy-url")
        def toolbox_proxy_url(sandbox_id: str) -> Response:
            return _reply(ToolboxProxyUrl(url=f"http://127.0.0.1:{self.port}/toolbox"))

        @app.post("/api/snapshots")
        async def create_snapshot(request: Request) -> Response:
            spec = CreateSnapshot.from_dict(await request.json())
            if spec.name in self.snapshots:
                return _error(409, f"Snapshot with name {spec.name} already exists")
            dockerfile = spec.build_info.dockerfile_content if spec.build_info else ""
            files = {path: base64.b64decode(data)
                     for data, path in IMAGE_FILE.findall(dockerfile)}
            directories = IMAGE_DIR.findall(dockerfile)
            snapshot = SnapshotDto(
                id=str(uuid.uuid4()), general=False, name=spec.name, state=SnapshotState.PENDING,
                size=None, entrypoint=None, cpu=1, gpu=0, mem=1, disk=3, error_reason=None,
                created_at=_now(), updated_at=_now(), last_used_at=None, source_sandbox_id=None)
            with self._lock:
                self.snapshots[spec.name] = snapshot
                self.snapshot_files[spec.name] = files
                self.snapshot_dirs[spec.name] = directories
            return _reply(snapshot)

        @app.get("/api/snapshots/{id_or_name}")
        def get_snapshot(id_or_name: str) -> Response:
            for snapshot in self.snapshots.values():
                if id_or_name in (snapshot.id, snapshot.name):
                    reply = _reply(snapshot)
                    snapshot.state = SnapshotState.ACTIVE  # built by the next poll
                    return reply
            return _error(404, f"Snapshot {id_or_name} not found")

        @app.post("/api/volumes")
        async def create_volume(request: Request) -> Response:
            spec = CreateVolume.from_dict(await request.json())
            if spec.additional_properties:
                self.unexpected.append(f"volume fields {sorted(spec.additional_properties)}")
            if self._volume(spec.name) is not None:
                return _error(409, f"Volume with name {spec.name} already exists")
            volume_id = str(uuid.uuid4())
            path = self._root / "volumes" / volume_id
            path.mkdir(parents=True)
            dto = VolumeDto(id=volume_id, name=spec.name, organization_id="org-standin",
                            state=VolumeState.PENDING_CREATE, created_at=_now(),
                            updated_at=_now(), last_used_at=None, error_reason=None)
            with self._lock:
                self.volumes[volume_id] = StandInVolume(dto, path)
            return _reply(dto)

        @app.get("/api/volumes")
        def list_volumes(includeDeleted: bool = False) -> Response:  # noqa: N803 - API name
            with self._lock:
                dtos = [v.dto.to_dict() for v in self.volumes.values()]
            return JSONResponse(jsonable_encoder(dtos))

        @app.get("/api/volumes/by-name/{name}")
        def get_volume(name: str) -> Response:
            volume = self._volume(name)
            if volume is None:
                return _error(404, f"Volume with name {name} not found")
            reply = _reply(volume.dto)
            volume.dto.state = VolumeState.READY  # made by the next poll
            return reply

        @app.delete("/api/volumes/{volume_id}")
        def delete_volume(volume_id: str) -> Response:
            volume = self._volume(volume_id)
            if volume is None:
                return _error(404, f"Volume {volume_id} not found")
            if volume.dto.state not in (VolumeState.READY, VolumeState.ERROR):
                return _error(400, "Volume must be in 'ready' or 'error' state in order to be "
                              "deleted")
            with self._lock:
                users = [b.dto.id for b in self.sandboxes.values() if not b.deleted
                         and any(m.volume_id == volume_id for m in b.dto.volumes or [])]
                if users:
                    return _error(409, f"Volume cannot be deleted because it is in use by one "
                                  f"or more sandboxes (e.g. {users[0]})")
                del self.volumes[volume_id]
            shutil.rmtree(volume.path, ignore_errors=True)
            return Response(status_code=200)

        @app.get("/api/regions")
        def regions() -> Response:
            return JSONResponse(jsonable_encoder([
                Region(id=name, name=name, region_type=RegionType.SHARED, created_at=_now(),
                       updated_at=_now()).to_dict() for name in TARGETS]))

        @app.websocket("/api/socket.io/")
        async def events(websocket: WebSocket) -> None:
            self.requests.append("WS /api/socket.io/")
            await websocket.close(code=1008)

        # -- toolbox ------------------------------------------------------------------------
        @app.get(toolbox + "/work-dir")
        def work_dir(sandbox_id: str) -> Response:
            box = self._box(sandbox_id, started=True)
            if box is None:
                return _not_running(sandbox_id)
            return _reply(WorkDirResponse(dir=str(box.work_dir)))

        @app.post(toolbox + "/files/bulk-upload")
        async def upload(sandbox_id: str, request: Request) -> Response:
            box = self._box(sandbox_id, started=True)
            if box is None:
                return _not_running(sandbox_id)
            form = await request.form()
            written, errors = [], []
            for key, value in form.multi_items():
                if not key.endswith(".path"):
                    continue
                target = box.host_path(str(value)) if str(value).startswith("/") else None
                if target is None:
                    return _error(400, f"{value}: outside the sandbox")
                data = await form[key.removesuffix(".path") + ".file"].read()
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                except OSError as exc:  # as the daemon does: each file's error, then 400
                    errors.append(f"{value}: {exc.strerror}")
                    continue
                written.append({"path": str(value), "bytes": len(data)})
            if errors:
                return JSONResponse({"errors": errors, "files": written}, status_code=400)
            return JSONResponse({"files": written})

        @app.get(toolbox + "/files")
        def list_files(sandbox_id: str, path: str = ".", depth: int = 1) -> Response:
            box = self._box(sandbox_id, started=True)
            if box is None:
                return _not_running(sandbox_id)
            if depth != 1:
                self.unexpected.append(f"list_files depth={depth}")
            target = box.visible(path)
            if target is None or not target.exists():
                return _daemon_error(404, "FILE_NOT_FOUND", f"open {path}: no such file or "
                                     "directory")
            if not target.is_dir():
                return _daemon_error(400, "BAD_REQUEST", f"open {path}: not a directory")
            infos = []
            for child in sorted(target.iterdir()):
                shown = box.visible(f"{path.rstrip('/')}/{child.name}")
                if shown is not None and shown.exists():  # the daemon skips what it can't stat
                    infos.append(_file_info(shown, f"{path.rstrip('/')}/{child.name}"))
            return JSONResponse(jsonable_encoder([info.to_dict() for info in infos]))

        @app.get(toolbox + "/files/info")
        def file_info(sandbox_id: str, path: str = "") -> Response:
            target = self._stat(sandbox_id, path)
            if isinstance(target, Response):
                return target
            return _reply(_file_info(target, path))

        @app.post(toolbox + "/files/bulk-download")
        async def download(sandbox_id: str, request: Request) -> Response:
            box = self._box(sandbox_id, started=True)
            if box is None:
                return _not_running(sandbox_id)
            spec = FilesDownloadRequest.from_dict(await request.json())
            if spec.additional_properties or not spec.paths:
                return JSONResponse({"error": 'request body must be {"paths": [ ... ]} and '
                                     "non-empty"}, status_code=400)
            parts = []
            for path in spec.paths:
                target = box.visible(path)
                if target is None or not target.is_file():
                    error = {"statusCode": 404, "code": "FILE_NOT_FOUND", "source": DAEMON,
                             "message": f"file not found or invalid: {path}"}
                    parts.append(("error", path, "application/json",
                                  json.dumps(error).encode()))
                else:
                    parts.append(("file", path, "application/octet-stream",
                                  target.read_bytes()))
            return Response(_multipart(parts), media_type="multipart/form-data; boundary="
                            + DOWNLOAD_BOUNDARY)

        @app.delete(toolbox + "/files")
        def delete_file(sandbox_id: str, path: str = "", recursive: bool = False) -> Response:
            target = self._stat(sandbox_id, path)
            if isinstance(target, Response):
                return target
            if target.is_dir() and not recursive:
                return _daemon_error(400, "BAD_REQUEST", "cannot delete directory without "
                                     "recursive flag")
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
            return Response(status_code=204)

        @app.post(toolbox + "/process/session")
        async def create_session(sandbox_id: str, request: Request) -> Response:
            spec = CreateSessionRequest.from_dict(await request.json())
            box = self._box(sandbox_id, started=True)
            if box is None:
                return _not_running(sandbox_id)
            if spec.session_id in box.sessions:
                return _error(409, "session already exists")
            box.sessions[spec.session_id] = {}
            return Response(status_code=201)

        @app.post(toolbox + "/process/session/{session_id}/exec")
        async def execute(sandbox_id: str, session_id: str, request: Request) -> Response:
            spec = SessionExecuteRequest.from_dict(await request.json())
            box = self._box(sandbox_id, started=True)
            if box is None or session_id not in box.sessions:
                return _error(404, "session not found")
            if not spec.run_async:
                self.unexpected.append("synchronous session command")
                return _error(400, "the stand-in runs asynchronous commands only")
            process = subprocess.Popen(
                box.argv(spec.command), cwd=box.work_dir, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                env={"PATH": "/usr/bin:/bin", "HOME": str(box.work_dir), "LANG": "C.UTF-8"})
            command = StandInCommand(str(uuid.uuid4()), spec.command, process,
                                     bool(spec.suppress_input_echo))
            box.sessions[session_id][command.id] = command
            _relay(command)
            return _reply(SessionExecuteResponse(cmd_id=command.id))

        @app.post(toolbox + "/process/session/{session_id}/command/{command_id}/input")
        async def send_input(sandbox_id: str, session_id: str, command_id: str,
                             request: Request) -> Response:
            spec = SessionSendInputRequest.from_dict(await request.json())
            command = self._command(sandbox_id, session_id, command_id)
            if command is None:
                return _error(404, "command not found")
            if command.exit_code is not None:
                return _error(410, f"command has already completed with exit code "
                              f"{command.exit_code}")
            data = spec.data if spec.data.endswith("\n") else spec.data + "\n"
            try:
                command.process.stdin.write(data.encode("utf-8"))
                command.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return _error(410, "command has already completed")
            if not command.suppress_echo:
                command.append(STDOUT_PREFIX + data.encode("utf-8"))
            return Response(status_code=200)

        @app.get(toolbox + "/process/session/{session_id}/command/{command_id}")
        def get_command(sandbox_id: str, session_id: str, command_id: str) -> Response:
            command = self._command(sandbox_id, session_id, command_id)
            if command is None:
                return _error(404, "command not found")
            return _reply(Command(id=command.id, command=command.command,
                                  exit_code=command.exit_code))

        @app.websocket(toolbox + "/process/session/{session_id}/command/{command_id}/logs")
        async def logs(websocket: WebSocket, sandbox_id: str, session_id: str,
                       command_id: str) -> None:
            path = websocket.url.path
            self.requests.append(f"WS {path}")
            command = self._command(sandbox_id, session_id, command_id)
            if (websocket.headers.get("authorization") != f"Bearer {self.api_key}"
                    or command is None or websocket.query_params.get("follow") != "true"):
                self.unexpected.append(f"WS {path}?{websocket.url.query}")
                await websocket.close(code=1008)
                return
            failure = self._take_failure("WS", path)
            await websocket.accept()
            if failure is not None:  # the connection drops, the command goes on
                await websocket.close(code=1011)
                return
            loop = asyncio.get_running_loop()
            offset, done, drops = 0, False, command.drops
            while not done:
                chunk, done, dropped = await loop.run_in_executor(
                    self._waiters, command.read_from, offset, drops, 1.0)
                if dropped:
                    await websocket.close(code=1011)
                    return
                if chunk:
                    await websocket.send_bytes(chunk)
                    offset += len(chunk)
                    done = False  # the end is only when nothing is left
            await websocket.close(code=1000)

        @app.delete(toolbox + "/process/session/{session_id}")
        def delete_session(sandbox_id: str, session_id: str) -> Response:
            box = self._box(sandbox_id, started=True)
            if box is None or session_id not in box.sessions:
                return _error(404, "session not found")
            for command in box.sessions.pop(session_id).values():
                command.kill()
                command.finish(-9)
            return Response(status_code=204)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def anything_else(path: str, request: Request) -> Response:
            self.unexpected.append(f"{request.method} /{path}")
            return _error(404, f"the stand-in does not serve {request.method} /{path}")

        return app

    def _command(self, sandbox_id: str, session_id: str, command_id: str
                 ) -> StandInCommand | None:
        box = self._box(sandbox_id, started=True)
        return None if box is None else box.sessions.get(session_id, {}).get(command_id)


def _not_running(sandbox_id: str) -> JSONResponse:
    return _error(400, f"Sandbox {sandbox_id} is not started")


def _daemon_error(status: int, code: str, message: str) -> JSONResponse:
    """An error as the sandbox daemon sends it (common-go's ErrorResponse)."""
    return JSONResponse({"statusCode": status, "message": message, "code": code,
                         "source": DAEMON}, status_code=status)


def _file_info(target: Path, path: str) -> FileInfo:
    """What the daemon says of a path: os.Stat, so links are followed."""
    info = target.stat()
    modified = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
    return FileInfo(
        name=Path(path).name, path=path, is_dir=stat.S_ISDIR(info.st_mode), size=info.st_size,
        mode=stat.filemode(info.st_mode), permissions=f"{stat.S_IMODE(info.st_mode):04o}",
        # Go's time.String() layout, which is why the SDK deprecates it for modifiedAt.
        mod_time=modified.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"),
        modified_at=modified.isoformat(), owner=str(info.st_uid), group=str(info.st_gid))


def _multipart(parts: list[tuple[str, str, str, bytes]]) -> bytes:
    """(field name, source path, content type, body) parts, as the daemon's bulk download
    writes them."""
    body = bytearray()
    for name, path, content_type, data in parts:
        body += (f"--{DOWNLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{path}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
        body += data + b"\r\n"
    return bytes(body + f"--{DOWNLOAD_BOUNDARY}--\r\n".encode())


def _relay(command: StandInCommand) -> None:
    """Copy the command's output into its log, a line at a time, as the daemon's shell does."""

    def copy(stream: Any, prefix: bytes) -> None:
        for line in stream:
            command.append(prefix + (line if line.endswith(b"\n") else line + b"\n"))

    readers = [threading.Thread(target=copy, args=(command.process.stdout, STDOUT_PREFIX),
                                daemon=True),
               threading.Thread(target=copy, args=(command.process.stderr, STDERR_PREFIX),
                                daemon=True)]
    for reader in readers:
        reader.start()

    def wait() -> None:
        code = command.process.wait()
        for reader in readers:
            reader.join()
        command.finish(code)

    threading.Thread(target=wait, daemon=True).start()


# -- fixtures for the Daytona tests -----------------------------------------------------------

@pytest.fixture
def standin() -> Iterator[DaytonaStandIn]:
    with DaytonaStandIn() as server:
        yield server
        assert server.unexpected == [], "the backend made requests the stand-in does not serve"


@pytest.fixture
def settings(standin: DaytonaStandIn) -> Settings:
    return Settings(sandbox="daytona", daytona_api_key=standin.api_key,
                    daytona_api_url=standin.api_url, daytona_target=None,
                    daytona_snapshot=None, exec_timeout_s=20, exec_kill_grace_s=0.5,
                    daytona_create_timeout_s=20)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries and volume polls without the production waits."""
    from fleet_rlm.sandbox import daytona, daytona_admin

    monkeypatch.setattr(daytona_admin, "RETRY_BASE_S", 0.01)
    monkeypatch.setattr(daytona, "VOLUME_POLL_S", 0.01)


def cli_env(monkeypatch: pytest.MonkeyPatch, standin: DaytonaStandIn, tmp_path: Path) -> None:
    """The environment a `fleet` command reads, pointed at the stand-in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "data"))  # never the user's own
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    monkeypatch.delenv("FLEET_DAYTONA_API_KEY", raising=False)
    monkeypatch.delenv("FLEET_DAYTONA_SNAPSHOT", raising=False)
    monkeypatch.delenv("DAYTONA_TARGET", raising=False)
    monkeypatch.setenv("FLEET_SANDBOX", "daytona")
    monkeypatch.setenv("FLEET_API_KEY", "test")  # a model is configured: doctor checks that too
    monkeypatch.setenv("DAYTONA_API_KEY", standin.api_key)
    monkeypatch.setenv("DAYTONA_API_URL", standin.api_url)
