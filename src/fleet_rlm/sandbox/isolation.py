"""The isolation in force on this host, as `fleet doctor` and the server's sandbox check report
it: a sandbox of the configured backend (bubblewrap or gVisor) is started and looked at from
inside and outside."""

from __future__ import annotations

import json
import shutil
import subprocess

from ..config import Settings
from .base import SandboxError
from .health import Check, fail, ok, warn
from .local import LocalSandbox, bwrap_disables_userns

PROBE = """
import ctypes, json, os, resource, sys
libc = ctypes.CDLL(None, use_errno=True)
work = os.statvfs('/work')
print(json.dumps({"python": sys.version.split()[0],
                  "userns": libc.unshare(0x10000000) == 0,
                  "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                  "work_mb": work.f_blocks * work.f_frsize >> 20, "work_files": work.f_files,
                  "tmp_mb": os.statvfs('/tmp').f_blocks * os.statvfs('/tmp').f_frsize >> 20}))
"""


def isolation_checks(settings: Settings) -> list[Check]:
    """Start a sandbox of `settings.sandbox` (local or gvisor), run the probe, say what holds.
    Raises SandboxError when no sandbox starts."""
    from . import create_sandbox

    sandbox = create_sandbox(settings)
    assert isinstance(sandbox, LocalSandbox)
    with sandbox:
        result = sandbox.execute(PROBE, timeout=30)
        if not result.ok:
            raise SandboxError(f"the sandbox ran but failed: {result.error_message}. "
                               f"{sandbox.fix_hint}")
        seen = json.loads(result.stdout)
        envelope, quota = sandbox.envelope, sandbox.quota_in_force
    s = settings
    checks = [ok("runtime", f"{runtime(settings)} sandbox works (Python {seen['python']} inside)")]
    if envelope is not None:
        hierarchy = envelope.hierarchy
        checks.append(ok("cgroups", f"control groups {hierarchy.version} "
                                    f"({', '.join(hierarchy.controllers)}): per sandbox "
                                    f"{s.sandbox_memory_mb} MiB of memory with /tmp and /dev/shm "
                                    f"(FLEET_SANDBOX_MEMORY_MB), {s.sandbox_max_processes} "
                                    f"processes (FLEET_SANDBOX_MAX_PROCESSES), "
                                    f"{s.sandbox_cpus:g} CPU (FLEET_SANDBOX_CPUS)"))
    else:
        from . import cgroups

        try:
            cgroups.hierarchy()
            reason = "they could not be set up"
        except cgroups.CgroupsUnavailable as exc:
            reason = str(exc)
        checks.append(warn("cgroups", f"NO control groups: {reason}. Memory, processes and /tmp "
                                      "are capped per process and per mount, not per sandbox"))
    if quota:
        checks.append(ok("disk_quota", f"disk quota: /work is an ext4 image of "
                                       f"{s.sandbox_disk_mb} MiB ({seen['work_mb']} MiB usable) "
                                       f"and {seen['work_files']} files (FLEET_SANDBOX_DISK_MB, "
                                       f"FLEET_SANDBOX_DISK_FILES); /tmp {seen['tmp_mb']} MiB "
                                       "(FLEET_SANDBOX_TMP_MB)"))
    else:
        from .disk import quota_unavailable_reason

        reason = quota_unavailable_reason() or "its image could not be mounted"
        checks.append(warn("disk_quota", f"NO disk quota on /work: {reason}; sandbox code can "
                                         "fill the host disk"))
    also = " and bubblewrap's --disable-userns" if _bwrap_userns_flag(settings) else ""
    checks.append(ok("seccomp", f"user namespaces refused inside (seccomp filter{also}); the "
                                "filter (libseccomp) also denies ptrace, mount, keyrings, bpf, "
                                "perf_event_open, kernel modules and io_uring")
                  if not seen["userns"] else
                  fail("seccomp", "user namespaces CAN be created inside the sandbox: the "
                                  "seccomp filter is not in force"))
    files = f"open files: {seen['nofile']} per process (FLEET_SANDBOX_MAX_OPEN_FILES)"
    checks.append(ok("open_files", files) if seen["nofile"] == s.sandbox_max_open_files
                  else fail("open_files", files))
    return checks


def runtime(settings: Settings) -> str:
    """"bubblewrap 0.8.0" or "gVisor (runsc 20221219.0)": what runs the sandbox."""
    from .backends import backend

    tool = backend(settings.sandbox).runtime or "bwrap"
    path = shutil.which(tool)
    if path is None:
        return "gVisor" if tool == "runsc" else "bubblewrap"
    first = subprocess.run([path, "--version"], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    version = first[0].split()[-1] if first else "?"
    return f"gVisor (runsc {version})" if tool == "runsc" else f"bubblewrap {version}"


def _bwrap_userns_flag(settings: Settings) -> bool:
    import os

    from .backends import backend

    bwrap = shutil.which("bwrap")
    return (backend(settings.sandbox).runtime == "bwrap" and os.geteuid() != 0
            and bwrap is not None and bwrap_disables_userns(bwrap))
