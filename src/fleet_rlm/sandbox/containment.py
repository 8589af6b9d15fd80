"""How a local sandbox (bubblewrap or gVisor) is held as one thing: its control group and its
workspace's quota set up (or a loud fallback), the shell that starts it inside them, and the
results of a sandbox that went over a cap, explained."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..config import Settings
from . import cgroups, disk
from .base import ExecResult

log = logging.getLogger(__name__)
ENOSPC = "[Errno 28]"
CGROUP_FALLBACK = ("Falling back to per-process limits: memory, /tmp and /dev/shm are capped per "
                   "process and per mount, not per sandbox, and there is no CPU cap.")
DISK_FALLBACK = "/work is a plain host directory that sandbox code can fill."

_warned: set[str] = set()


def warn_once(what: str, message: str) -> None:
    """A missing defence is said loudly, once per process (and by `fleet doctor`)."""
    if what not in _warned:
        _warned.add(what)
        log.warning(message)


def warn_missing_defences() -> None:
    """Said at start (the session service's): what this host cannot give its sandboxes."""
    try:
        cgroups.hierarchy()
    except cgroups.CgroupsUnavailable as exc:
        warn_once("cgroups", f"NO CONTROL GROUPS for sandboxes: {exc}. {CGROUP_FALLBACK}")
    if reason := disk.quota_unavailable_reason():
        warn_once("disk", f"NO DISK QUOTA on sandbox work dirs: {reason}. {DISK_FALLBACK}")


def quota_workspace(settings: Settings, work_dir: Path) -> bool:
    """Give a work dir its disk quota (its image mounted there) unless it has it: True when
    this call mounted it. Where the host cannot, says so loudly (once) and leaves it plain."""
    try:
        return disk.mount_workspace(work_dir, settings.sandbox_disk_mb,
                                    settings.sandbox_disk_files)
    except disk.QuotaUnavailable as exc:
        warn_once("disk", f"NO DISK QUOTA on sandbox work dirs: {exc}. {DISK_FALLBACK}")
        return False


def open_envelope(settings: Settings, name: str, host_pids: int) -> cgroups.Envelope | None:
    """The sandbox's control group with its caps, or None (said loudly) where there is none."""
    try:
        envelope = cgroups.Envelope(name)
        envelope.set_caps(settings.sandbox_memory_mb * 1024 * 1024, host_pids,
                          settings.sandbox_cpus)
    except (cgroups.CgroupsUnavailable, OSError) as exc:
        warn_once("cgroups", f"NO CONTROL GROUPS for sandboxes: {exc}. {CGROUP_FALLBACK}")
        return None
    return envelope


def enter_command(envelope: cgroups.Envelope | None, max_open_files: int | None) -> list[str]:
    """A shell that caps open files, joins the sandbox's control group, then execs the runtime
    given after it: every process of the sandbox starts inside its envelope, never outside."""
    steps = [f"ulimit -n {max_open_files}"] if max_open_files else []
    steps += [f"echo $$ > {shlex.quote(path)}"
              for path in (envelope.enter_paths if envelope else [])]
    return ["/bin/sh", "-c", " && ".join([*steps, 'exec "$@"']), "sh"]


def memory_limit_result(settings: Settings, result: ExecResult) -> ExecResult:
    """What a cell gets when the kernel killed in its sandbox for memory."""
    return ExecResult(
        stdout=result.stdout, stderr=result.stderr, error_type="MemoryLimit",
        error_message=f"the sandbox went over its memory cap of {settings.sandbox_memory_mb} MiB "
        "(all its processes and its /tmp and /dev/shm files, FLEET_SANDBOX_MEMORY_MB) and was "
        "stopped; its variables are lost",
        duration_s=result.duration_s, state_lost=True)


def explain_full_disk(settings: Settings, result: ExecResult) -> None:
    """A write that found no space says which quota and which settings."""
    s = settings
    if result.error_message and ENOSPC in result.error_message:
        result.error_message += (
            f" (the sandbox's disk quota: /work holds {s.sandbox_disk_mb} MiB in at most "
            f"{s.sandbox_disk_files} files, FLEET_SANDBOX_DISK_MB and FLEET_SANDBOX_DISK_FILES; "
            f"/tmp and /dev/shm {s.sandbox_tmp_mb} MiB each, FLEET_SANDBOX_TMP_MB)")
