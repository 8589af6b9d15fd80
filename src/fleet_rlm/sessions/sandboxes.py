"""Each session's persistent python sandbox and its workspace: made on first use, its variables
saved after every turn and restored when a new sandbox starts, closed (saved) when idle."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..sandbox import Sandbox, SandboxError, backend, create_sandbox
from ..workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)

WORKSPACE_DIRS = ("memory", "artifacts", "buffers", "meta")
LOST_VARIABLES = "meta/lost.json"  # written by SAVE_STATE

# Run inside the session's sandbox after each turn / when it starts: picklable globals survive a
# restart of the process; the others are listed as lost. Only a namespace that RESTORE_STATE
# prepared is saved, so a sandbox restarted without its state never overwrites the good save
# with an empty one; and the save is written whole or not at all.
SAVE_STATE = """
import pickle as _p, types as _t, json as _j, os as _o
if '_fleet_restored' not in globals():
    raise RuntimeError('this sandbox did not restore the saved state; not saving over it')
_keep, _lost = {}, []
for _k, _v in list(globals().items()):
    if _k.startswith('_') or isinstance(_v, _t.ModuleType) or callable(_v) and _k.isupper():
        continue
    try:
        _p.dumps(_v); _keep[_k] = _v
    except Exception:
        _lost.append(_k)
for _name, _write in (('namespace.pkl', lambda _f: _p.dump(_keep, _f)),
                      ('lost.json', lambda _f: _f.write(_j.dumps(sorted(_lost)).encode()))):
    with open(f'/work/meta/.{_name}.new', 'wb') as _f:
        _write(_f)
    _o.replace(f'/work/meta/.{_name}.new', f'/work/meta/{_name}')
"""
RESTORE_STATE = """
import pickle as _p, os as _o
if _o.path.exists('/work/meta/namespace.pkl'):
    with open('/work/meta/namespace.pkl', 'rb') as _f:
        globals().update(_p.load(_f))
_fleet_restored = True
"""


class SandboxPool:
    """The sandboxes of the sessions this process serves, by session id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sandboxes: dict[str, Sandbox] = {}
        self.quota_mounts: set[Path] = set()  # workspace images this process mounted
        self.used: dict[str, float] = {}  # session id -> when its sandbox was last used
        # One lock per session id while its sandbox is made (sandbox()).
        self._locks: dict[str, threading.Lock] = {}

    def workspace(self, session_id: str) -> Path:
        """The session's directory on this machine, laid out: its workspace on the local
        backends; on Daytona only the layout its volume gets."""
        root = self.settings.data_dir / "workspaces" / session_id
        if backend(self.settings.sandbox).disk_quota:  # an image mounted here
            from ..sandbox.containment import quota_workspace

            if quota_workspace(self.settings, root):
                self.quota_mounts.add(root)
        for name in WORKSPACE_DIRS:
            (root / name).mkdir(parents=True, exist_ok=True)
        return root

    def session_workspace(self, session_id: str) -> Workspace:
        """The session's files as its sandbox sees them at /work, wherever the backend keeps
        them: the local directory, or (Daytona) the session's volume through its sandbox."""
        return backend(self.settings.sandbox).workspace(
            self.settings, lambda: self.workspace(session_id), lambda: self.sandbox(session_id))

    def sandbox(self, session_id: str) -> Sandbox:
        """The session's own python sandbox, alive across turns, restored after a restart.
        Made once even when a turn and the workspace routes ask for it at the same time."""
        self.used[session_id] = time.monotonic()
        sandbox = self.sandboxes.get(session_id)
        if sandbox is not None:
            return sandbox
        with self._locks.setdefault(session_id, threading.Lock()):
            sandbox = self.sandboxes.get(session_id)
            if sandbox is None:
                # A Daytona sandbox replaced between turns (stopped, deleted) restores by itself.
                sandbox = create_sandbox(self.settings, work_dir=self.workspace(session_id),
                                         labels={"session": session_id}, restore=RESTORE_STATE)
                restored = sandbox.execute(RESTORE_STATE, timeout=60)
                if not restored.ok:
                    log.warning("could not restore session %s variables: %s", session_id,
                                restored.error_message)
                self.sandboxes[session_id] = sandbox
        return sandbox

    def save_state(self, session_id: str, sandbox: Sandbox | None = None) -> None:
        sandbox = sandbox or self.sandboxes.get(session_id)
        if sandbox is not None:
            result = sandbox.execute(SAVE_STATE, timeout=60)
            if not result.ok:
                log.warning("could not save session %s variables: %s", session_id,
                            result.error_message)

    def touch(self, session_id: str) -> None:
        self.used[session_id] = time.monotonic()

    async def reap_idle(self, busy: Callable[[], set[str]]) -> None:
        """Save and close the sandboxes of sessions idle for FLEET_SANDBOX_IDLE_S (no turn in
        flight (`busy`), no use); the next use starts a new one, restored from the save."""
        idle_s = self.settings.sandbox_idle_s
        while True:
            await asyncio.sleep(min(idle_s / 2, 60.0))
            in_flight = busy()
            now = time.monotonic()
            for session_id in [s for s in self.sandboxes if s not in in_flight
                               and now - self.used.get(s, now) >= idle_s]:
                # Taken from the map here, on the loop, so no turn can pick it up any more.
                sandbox = self.sandboxes.pop(session_id)
                try:
                    await asyncio.to_thread(self._retire, session_id, sandbox)
                except Exception:  # the next session may still be reaped
                    log.exception("could not close the idle sandbox of session %s", session_id)

    def _retire(self, session_id: str, sandbox: Sandbox) -> None:
        # Under the session's lock: a new sandbox for it waits until this one is saved.
        with self._locks.setdefault(session_id, threading.Lock()):
            try:
                self.save_state(session_id, sandbox)
            finally:
                sandbox.close()
        log.info("closed the idle sandbox of session %s (saved; restored on next use)",
                 session_id)

    def lost_variables(self, session_id: str) -> list[str]:
        """The variables the last turn left that could not be saved (a lambda, an open file):
        a new sandbox starts without them. Blocking (on Daytona it reads through the sandbox)."""
        try:
            chunks, _ = self.session_workspace(session_id).open_file(LOST_VARIABLES)
        except WorkspaceError as exc:
            if exc.reason != "not_found":
                raise
            return []
        return json.loads(b"".join(chunks))

    async def remove(self, session_id: str) -> None:
        """Close the session's sandbox and delete its workspace (the directory here and, on
        Daytona, its volume)."""
        sandbox = self.sandboxes.pop(session_id, None)
        if sandbox is not None:
            await asyncio.to_thread(sandbox.close)
        self._locks.pop(session_id, None)
        root = self.settings.data_dir / "workspaces" / session_id
        from ..sandbox.disk import remove_workspace

        self.quota_mounts.discard(root)
        await asyncio.to_thread(remove_workspace, root)
        try:  # what the backend keeps elsewhere: on Daytona the session's volume
            await asyncio.to_thread(backend(self.settings.sandbox).delete_session, self.settings,
                                    session_id)
        except SandboxError as exc:  # the session is gone: gc finds its volume later
            log.warning("%s; `fleet daytona gc` deletes it later", exc)

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.close()
        self.sandboxes.clear()
        from ..sandbox.disk import unmount_workspace

        for root in self.quota_mounts:
            unmount_workspace(root)
