"""Local backend: the driver in a subprocess under bubblewrap.

Isolation: no network, the host filesystem hidden except a read-only Python runtime, a private
/tmp, one writable work dir, no host environment, its own pid namespace, and (when the host runs
as root) its own unprivileged uid so the process cap is really per sandbox. Containment: one
control group per sandbox (memory with its tmpfs, processes, CPU; `cgroups.py`), a disk quota
on /work (`disk.py`), a seccomp filter (`seccomp.py`) and an open-files limit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from . import cgroups, disk, seccomp
from .backends import backend
from .base import (
    DRIVER_SOURCE,
    Callback,
    DriverBackedSandbox,
    DriverSession,
    ExecResult,
    SandboxError,
)
from .bulk import OUTBOX, Outbox, write_text
from .containment import (
    MemoryLimit,
    enter_command,
    explain_full_disk,
    make_root,
    memory_limit_result,
    open_envelope,
    quota_workspace,
    record_mount,
)

log = logging.getLogger(__name__)

INSIDE_WORK = "/work"
INSIDE_VARS = "/fleet/vars"
INSIDE_DRIVER = "/fleet/driver.py"
# Where uids for sandboxes are drawn from when the host runs as root; far above real accounts.
UID_BASE, UID_SPAN = 200_000, 100_000
USER_NAMESPACES = ["--unshare-all", "--cap-drop", "ALL"]
# As root: no user namespace (the driver's setuid needs real uids); only the capabilities the
# driver needs to drop to its uid, which it does before any model code runs.
ROOT_NAMESPACES = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                   "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                   "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]

FIX_BWRAP = (
    "bubblewrap is needed to isolate model-written code. Install it with "
    "`apt-get install -y bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`, and make sure "
    "unprivileged user namespaces are allowed (sysctl kernel.unprivileged_userns_clone=1 / "
    "user.max_user_namespaces > 0). To run WITHOUT isolation on a machine you trust, set "
    "FLEET_SANDBOX=unsafe-local."
)


def sandbox_python() -> str:
    """The interpreter the sandbox runs: the system one (readable by any uid), else ours."""
    for candidate in ("/usr/bin/python3", getattr(sys, "_base_executable", None)):
        if candidate and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise SandboxError("no Python interpreter found for the sandbox")


def _runtime_binds(python: str) -> list[str]:
    args: list[str] = []
    for top in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = str(Path(python).resolve().parent.parent)
    if not prefix.startswith("/usr"):
        args += ["--ro-bind", prefix, prefix]
    return args


class LocalSandbox(DriverBackedSandbox):
    """A Sandbox running driver.py in a subprocess, under bubblewrap unless `isolated=False`."""

    fix_hint = FIX_BWRAP
    runtime_nofile = True  # the open-files cap is set on the runtime (bwrap), inherited inside
    follow_cpu = True  # the driver runs on this machine's scheduler: see DriverSession.share_cpu

    def __init__(self, settings: Settings | None = None, *, isolated: bool | None = None,
                 work_dir: Path | None = None, restore: str | None = None) -> None:
        """`restore` is run by a driver that replaces one that died, before any other code."""
        self.settings = settings or Settings()
        self.restore = restore
        self._spawns = 0
        self.isolated = backend(self.settings.sandbox).isolated if isolated is None else isolated
        self._given_work_dir = work_dir
        self._root: Path | None = None
        self.work_dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._session: DriverSession | None = None
        self._lock = threading.Lock()
        self.uid: int | None = None
        self._closed = False
        self.envelope: cgroups.Envelope | None = None
        self._oom_kills = 0
        self._mounted_work = False  # this sandbox mounted the work dir's image (and unmounts it)
        self._outbox: Outbox | None = None  # value files the driver writes, read from here
        self.quota_in_force = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._closed:  # e.g. killed by a cancel: it must not come back and run code
                raise SandboxError("this sandbox was closed")
            if self._session is not None and self._session.alive:
                return
            if self._session is not None:  # it died: start afresh, the caller re-sends state
                self._cleanup_process()
            try:
                self._spawn()
            except BaseException:
                self._release()  # a failed start keeps no group or mount, closed or not
                raise
            self._spawns += 1
            if self._spawns > 1 and self.restore:
                assert self._session is not None
                result = self._session.execute(self.restore, self.settings.exec_timeout_s, None,
                                               None)
                if not result.ok:
                    log.warning("a restarted sandbox could not restore the saved state: %s",
                                result.error_message)

    def _spawn(self) -> None:
        s = self.settings
        if self._root is None:
            self._root = make_root()
        (self._root / "vars").mkdir(exist_ok=True)
        os.chmod(self._root / "vars", 0o755)
        self.work_dir = self._given_work_dir or self._root / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        driver = self._root / "driver.py"
        shutil.copyfile(DRIVER_SOURCE, driver)
        os.chmod(driver, 0o644)

        if self.isolated:
            self._contain()
        python = sandbox_python() if self.isolated else sys.executable
        nproc = s.sandbox_max_processes
        limits = ["--memory-mb", str(s.sandbox_memory_mb), "--nproc", str(nproc),
                  "--fsize-mb", str(max(s.sandbox_memory_mb, 1024)), "--outbox", OUTBOX]
        as_root = self.isolated and os.geteuid() == 0
        if as_root:
            # bwrap runs privileged, so it can mount any work dir (even under a 0700 home);
            # the driver then drops to a uid of its own, so the process cap is per sandbox.
            self.uid = UID_BASE + secrets.randbelow(UID_SPAN)
            try:
                disk.give_to(self.work_dir, self.uid)
            except disk.ImageError as exc:
                raise SandboxError(f"could not give the work dir to the sandbox: {exc}") from exc
        elif self.isolated:
            # RLIMIT_NPROC counts every process of the uid, so leave room for the user's own.
            limits[3] = str(nproc + _count_processes(os.getuid()))
        passed: list[int] = []
        if self.isolated:
            command, passed = self._isolated_command(python, as_root, limits)
            nofile = self.settings.sandbox_max_open_files if self.runtime_nofile else None
            command = enter_command(self.envelope, nofile) + command
            cwd = None
        else:
            log.warning("FLEET_SANDBOX=unsafe-local: model-written code runs WITHOUT isolation")
            command = [python, "-I", str(driver), *limits]
            cwd = self.work_dir
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=cwd,
                # Never the host's environment, not even for bwrap: its pid-1 stays in the
                # sandbox and /proc/1/environ is readable from inside.
                env=_clean_env(), start_new_session=True, pass_fds=passed)
        except OSError as exc:
            raise SandboxError(f"could not start the sandbox: {exc}. {self.fix_hint}") from exc
        finally:
            for fd in passed:
                os.close(fd)
        threading.Thread(target=self._drain_stderr, args=(self._process,), daemon=True).start()
        process = self._process
        assert process.stdin is not None and process.stdout is not None  # both are pipes
        if self._outbox is None:  # the work dir as mounted now (its quota image, if any)
            # No value the sandbox can make is larger than its memory: nor is its file.
            self._outbox = Outbox(self.work_dir, s.sandbox_memory_mb * 1024 * 1024)
        self._outbox.clear()  # what a sandbox that died on this work dir left
        self._session = DriverSession(
            process.stdin, process.stdout, kill=lambda: _kill_group(process, self.isolated),
            put_file=self._put_file, max_output=s.max_output_chars,
            kill_grace_s=s.exec_kill_grace_s, direct=True, request_timeout_s=s.exec_timeout_s,
            outbox=self._outbox, drop_file=self._drop_file, sharing=self)
        try:
            ready = self._session.wait_ready(timeout=30)
        except SandboxError as exc:
            self._cleanup_process()
            hint = f" {self.fix_hint}" if self.isolated else ""
            raise SandboxError(f"{exc}; stderr: {self._stderr_tail()}{hint}") from None
        if self.follow_cpu and (supervisor := _host_pid(process.pid, ready.get("pid"))):
            self._session.share_cpu(supervisor)

    def _contain(self) -> None:
        """The work dir's quota and the sandbox's control group, or a loud fallback."""
        assert self._root is not None and self.work_dir is not None
        s = self.settings
        if not os.path.ismount(self.work_dir):  # said before mounting: a crash cannot hide it
            record_mount(self._root, self.work_dir)
        self._mounted_work = self._mounted_work or quota_workspace(s, self.work_dir)
        self.quota_in_force = os.path.ismount(self.work_dir)
        if self.envelope is None:
            self.envelope = open_envelope(s, self._root.name, self._host_pids())
        self._oom_kills = self.envelope.oom_kills() if self.envelope else 0

    def _host_pids(self) -> int:
        """The envelope's process cap, counted in host processes."""
        return self.settings.sandbox_max_processes

    def _isolated_command(self, python: str, as_root: bool,
                          driver_args: list[str]) -> tuple[list[str], list[int]]:
        """The command that runs the driver isolated, and the descriptors it must inherit."""
        seccomp_fd = seccomp.filter_fd()
        try:
            command = self._bwrap_command(python, as_root, seccomp_fd)
        except SandboxError:
            os.close(seccomp_fd)
            raise
        uid = ["--uid", str(self.uid)] if as_root else []
        return command + driver_args + uid, [seccomp_fd]

    def _bwrap_command(self, python: str, as_root: bool, seccomp_fd: int) -> list[str]:
        assert self._root is not None and self.work_dir is not None
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError(f"bubblewrap (bwrap) is not installed. {FIX_BWRAP}")
        tmpfs_bytes = self.settings.sandbox_tmp_mb * 1024 * 1024
        # With a user namespace of its own, bwrap can also forbid nested ones (0.8 and later);
        # as root there is none, and the seccomp filter denies them.
        no_userns = [] if as_root or not bwrap_disables_userns(bwrap) else ["--disable-userns"]
        return [
            bwrap, *(ROOT_NAMESPACES if as_root else USER_NAMESPACES), *no_userns,
            # The driver's supervisor is the namespace's pid 1: the kernel drops signals sent to it
            # from inside, and its end takes every process of the sandbox with it.
            "--die-with-parent", "--new-session", "--as-pid-1", "--seccomp", str(seccomp_fd),
            *_runtime_binds(python),
            # tmpfs pages are host RAM outside RLIMIT_AS: size the writable ones (their pages are
            # charged to the sandbox's memory cgroup), make / and /dev read-only.
            "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
            "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm",
            "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
            "--bind", str(self.work_dir), INSIDE_WORK, "--perms", "0755", "--dir", "/fleet",
            "--ro-bind", str(self._root / "vars"), INSIDE_VARS,
            "--ro-bind", str(self._root / "driver.py"), INSIDE_DRIVER,
            "--remount-ro", "/", "--chdir", INSIDE_WORK, "--clearenv",
            "--setenv", "HOME", INSIDE_WORK, "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONIOENCODING", "utf-8",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            python, "-I", INSIDE_DRIVER,
        ]

    def _put_file(self, name: str, chunks: Iterable[bytes]) -> str:
        """A value file in the directory the sandbox sees read-only at INSIDE_VARS."""
        assert self._root is not None
        target = self._root / "vars" / f"{secrets.token_hex(8)}-{name}"
        write_text(target, iter(chunks))
        return f"{INSIDE_VARS}/{target.name}" if self.isolated else str(target)

    def _drop_file(self, path: str) -> None:
        if self._root is not None:
            with contextlib.suppress(OSError):
                (self._root / "vars" / os.path.basename(path)).unlink()

    # -- value files shared with other sandboxes (shared.py's FileSharing) -------------------
    def host_path(self, inside: str) -> Path:
        assert self._root is not None
        return self._root / "vars" / Path(inside).name

    def link_file(self, source: Path, name: str) -> str:
        """A hard link in this sandbox's variables directory, which it sees read-only: the
        same bytes as `source`, a value file the host wrote, in no other sandbox's directory.
        Only that file: the directory `source` is in stays out of reach."""
        assert self._root is not None
        target = self._root / "vars" / f"{secrets.token_hex(8)}-{name}"
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError as exc:
            raise SandboxError(f"could not share {source.name} with the sandbox: {exc}") from exc
        return f"{INSIDE_VARS}/{target.name}" if self.isolated else str(target)

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        self._stderr_lines: list[bytes] = []
        assert process.stderr is not None  # a pipe
        for line in process.stderr:
            self._stderr_lines = (self._stderr_lines + [line])[-20:]

    def _stderr_tail(self) -> str:
        lines = getattr(self, "_stderr_lines", [])
        return b"".join(lines).decode("utf-8", errors="replace").strip() or "(empty)"

    # -- operations -------------------------------------------------------------------------
    def execute(self, code: str, timeout: float | None = None,
                callbacks: dict[str, Callback] | None = None,
                submit_fields: list[str] | None = None, cell: str | None = None
                ) -> ExecResult:
        result = super().execute(code, timeout, callbacks, submit_fields, cell)
        if self._memory_killed():
            return memory_limit_result(self.settings, result)
        explain_full_disk(self.settings, result)
        return result

    def put_variable(self, name: str, value: Any) -> None:
        with self._memory_kill_raised(f"sending variable {name!r}"):
            super().put_variable(name, value)

    def get_variable(self, name: str) -> Any:
        with self._memory_kill_raised(f"reading variable {name!r}"):
            return super().get_variable(name)

    @contextlib.contextmanager
    def _memory_kill_raised(self, operation: str) -> Iterator[None]:
        try:
            yield
        except SandboxError:
            if self._memory_killed():
                raise MemoryLimit(self.settings.sandbox_memory_mb, operation) from None
            raise

    def _memory_killed(self) -> bool:
        """Whether the kernel killed in the envelope for memory since it started. Whichever
        process it chose, the sandbox as a whole went over its cap: it is stopped, and
        restarts empty on the next call, as after any death."""
        if self.envelope is None or self.envelope.oom_kills() <= self._oom_kills:
            return False
        with self._lock:
            self._cleanup_process()
        return True

    def _live(self) -> DriverSession:
        if self._session is None or not self._session.alive:
            self.start()
        assert self._session is not None
        return self._session

    @property
    def alive(self) -> bool:
        return self._session is not None and self._session.alive

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cleanup_process()
            self._release()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def _release(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self.envelope is not None:
            self.envelope.remove()
            self.envelope = None
        if self._mounted_work and self.work_dir is not None:
            disk.unmount_workspace(self.work_dir)
            self._mounted_work = False

    def _cleanup_process(self) -> None:
        if self._session is not None:
            self._session.stopping = True
        if self._process is not None:  # killed before a graceful shutdown can race bwrap's exit
            _kill_group(self._process, self.isolated)
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._process is not None:
            _kill_group(self._process, self.isolated)
            if self.envelope is not None:  # a process that left bwrap's tree is still inside
                self.envelope.kill_all()
            for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> LocalSandbox:
        try:
            self.start()
        except BaseException:
            self.close()  # a failed start leaves nothing behind, its directory included
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _kill_group(process: subprocess.Popen, bwrap: bool = False) -> None:
    if bwrap and process.poll() is None:
        # bwrap's child is the sandbox's pid 1: killed first, bwrap reaps it and exits. bwrap
        # killed first would leave it a zombie of the host's init, which may never reap it.
        with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
            for child in children.split():
                os.kill(int(child), signal.SIGKILL)
            process.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _host_pid(root: int, pid: object) -> int | None:
    """The pid on this host of the process that is `pid` in its own pid namespace, among `root`
    and its descendants (the driver's supervisor is bwrap's child, and pid 1 of its namespace)."""
    todo = [root]
    while todo and isinstance(pid, int):
        here = todo.pop()
        try:
            with open(f"/proc/{here}/status") as status:
                ids = next(line for line in status if line.startswith("NSpid:")).split()[1:]
            with open(f"/proc/{here}/task/{here}/children") as children:
                todo += map(int, children.read().split())
        except (OSError, StopIteration, ValueError):
            continue
        if ids and int(ids[-1]) == pid:
            return here
    return None


def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


@functools.cache
def bwrap_disables_userns(bwrap: str) -> bool:
    usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False)
    return "--disable-userns" in usage.stdout


def _clean_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


SandboxFactory = Callable[[], LocalSandbox]
