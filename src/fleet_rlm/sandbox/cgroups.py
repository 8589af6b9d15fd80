"""One resource envelope per sandbox: a control group capping memory (tmpfs pages included),
processes and CPU for the sandbox as a whole.

cgroup v2 where the host's unified hierarchy has the memory and pids controllers, v1 (the
memory, pids and cpu hierarchies) otherwise. A sandbox's group is made under the host process's
own group (so the host's envelope still contains its sandboxes), in `fleet-rlm/<name>`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PARENT = "fleet-rlm"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu")
REQUIRED = ("memory", "pids")


@dataclass(frozen=True)
class Hierarchy:
    """Where this host's sandbox groups go: one parent directory per controller in use."""

    version: Literal["v2", "v1"]
    parents: dict[str, Path]  # v2: {"unified": dir}; v1: {"memory": dir, "pids": dir, ...}

    @property
    def controllers(self) -> list[str]:
        return list(V1_CONTROLLERS if self.version == "v2" else self.parents)


class CgroupsUnavailable(Exception):
    """Control groups cannot be used for sandboxes here; the message says why."""


@functools.cache
def hierarchy() -> Hierarchy:
    """The usable hierarchy, detected once per process; raises CgroupsUnavailable."""
    mounts = _cgroup_mounts()
    own = _own_groups()
    v2 = mounts.get("cgroup2")
    if v2 is not None and "" in own:
        controllers = (v2 / "cgroup.controllers").read_text().split()
        if all(c in controllers for c in REQUIRED):
            return Hierarchy("v2", {"unified": _v2_parent(v2 / own[""].lstrip("/"))})
    parents: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        if controller in mounts and controller in own:
            parent = mounts[controller] / own[controller].lstrip("/") / PARENT
            with contextlib.suppress(OSError):
                parent.mkdir(exist_ok=True)
                parents[controller] = parent
    missing = [c for c in REQUIRED if c not in parents]
    if missing:
        raise CgroupsUnavailable(
            f"no writable {' or '.join(missing)} control group (cgroup v2 with those "
            "controllers, or v1 hierarchies) for this process; run the host as root or give it "
            "a delegated cgroup (systemd: Delegate=yes)")
    return Hierarchy("v1", parents)


def _v2_parent(own: Path) -> Path:
    wanted = " ".join(f"+{c}" for c in V1_CONTROLLERS
                      if c in (own / "cgroup.controllers").read_text().split())
    try:
        try:
            (own / "cgroup.subtree_control").write_text(wanted)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # v2 enables controllers only below groups without processes: the host (alone in a
            # delegated group, as under systemd's Delegate=yes) moves to a leaf of its own.
            leaf = own / "fleet-host"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (own / "cgroup.subtree_control").write_text(wanted)
        parent = own / PARENT
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text(wanted)
    except OSError as exc:
        reason = ("other processes share its group (cgroup v2 allows controllers only below "
                  "groups without them)" if exc.errno == errno.EBUSY else str(exc))
        raise CgroupsUnavailable(
            f"cannot delegate controllers below this process's cgroup {own}: {reason}; run "
            "the host in a cgroup of its own with controllers delegated") from exc
    return parent


def _cgroup_mounts() -> dict[str, Path]:
    """{"cgroup2": mount point} and {v1 controller: mount point}."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup2":
            found.setdefault("cgroup2", Path(where))
        elif kind == "cgroup":
            for option in options.split(","):
                if option in V1_CONTROLLERS:
                    found.setdefault(option, Path(where))
    return found


def _own_groups() -> dict[str, str]:
    """This process's group per controller ("" for the v2 hierarchy)."""
    groups: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


class Envelope:
    """A sandbox's control group(s): made with its caps, entered by the sandbox's first
    process (see `enter_paths`), read for out-of-memory kills, emptied and removed."""

    def __init__(self, name: str) -> None:
        self.hierarchy = hierarchy()
        self.dirs = {key: parent / name for key, parent in self.hierarchy.parents.items()}
        for path in self.dirs.values():
            path.mkdir(exist_ok=True)
        events = "memory.events" if self.hierarchy.version == "v2" else "memory.oom_control"
        # Held open: it is read after every execution, and a re-read of an open control file
        # costs a tenth of opening it again.
        self._events: int | None = os.open(self._memory_dir / events,
                                           os.O_RDONLY | os.O_CLOEXEC)
        # A sandbox closed (Ctrl-C, a stop) while its last execution is read for kills: the
        # descriptor must not be closed under that read, nor read once its number is reused.
        self._events_lock = threading.Lock()

    def set_caps(self, memory_bytes: int, pids: int, cpus: float) -> None:
        """Write the caps; a group that refuses one is removed again (and OSError raised)."""
        try:
            self._write_caps(memory_bytes, pids, cpus)
        except OSError:
            self.remove()
            raise

    def _write_caps(self, memory_bytes: int, pids: int, cpus: float) -> None:
        quota = max(1000, int(cpus * CPU_PERIOD_US))
        if self.hierarchy.version == "v2":
            group = self.dirs["unified"]
            _write(group / "memory.max", memory_bytes)
            _write(group / "memory.swap.max", 0, optional=True)
            _write(group / "memory.oom.group", 1)  # one sandbox, one kill: nothing half-dead
            _write(group / "pids.max", pids)
            _write(group / "cpu.max", f"{quota} {CPU_PERIOD_US}", optional=True)
        else:
            memory = self.dirs["memory"]
            _write(memory / "memory.limit_in_bytes", memory_bytes)
            _write(memory / "memory.memsw.limit_in_bytes", memory_bytes, optional=True)
            _write(self.dirs["pids"] / "pids.max", pids)
            if "cpu" in self.dirs:
                _write(self.dirs["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
                _write(self.dirs["cpu"] / "cpu.cfs_quota_us", quota)

    @property
    def enter_paths(self) -> list[str]:
        """The files a process writes its pid to, to put itself in this envelope."""
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    @property
    def _memory_dir(self) -> Path:
        return self.dirs["unified" if self.hierarchy.version == "v2" else "memory"]

    def oom_kills(self) -> int:
        """How many processes the kernel has killed for this envelope's memory cap (0 once
        the envelope is removed)."""
        with self._events_lock:
            if self._events is None:
                return 0
            text = os.pread(self._events, 4096, 0).decode()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def processes(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in (self._memory_dir / "cgroup.procs").read_text().split()]
        return []

    def kill_all(self) -> None:
        """SIGKILL every process in the envelope, however it was started or detached."""
        kill_file = self._memory_dir / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for _ in range(50):  # a process forking while we kill: go round until none is left
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        with self._events_lock:
            if self._events is not None:
                os.close(self._events)
                self._events = None
        for path in self.dirs.values():
            for _ in range(100):  # a killed process leaves its group once the kernel reaps it
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def remove_stale(name: str) -> None:
    """Remove the group a sandbox of a crashed host left behind (if any)."""
    try:
        parents = hierarchy().parents
    except CgroupsUnavailable:
        return
    if any((parent / name).is_dir() for parent in parents.values()):
        Envelope(name).remove()


def _write(path: Path, value: object, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not (optional and not path.exists()):
            raise
