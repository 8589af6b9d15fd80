"""One record per sandbox backend, looked up by its name (FLEET_SANDBOX): how it makes a
sandbox and a session's workspace, what it checks for `fleet doctor` and the server's sandbox
check, what it says at start, and what it cleans up. Code that depends on the backend asks its
record instead of comparing names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from ..config import SandboxBackend, Settings
from .base import Sandbox, SandboxError
from .health import Check, warn

if TYPE_CHECKING:
    from ..workspace import Workspace

SandboxFactory = Callable[[Settings, Path | None, dict[str, str] | None, str | None], Sandbox]
# (settings, the session's local directory made on demand, the session's sandbox made on demand)
WorkspaceFactory = Callable[[Settings, Callable[[], Path], Callable[[], Sandbox]], "Workspace"]


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    isolated: bool  # model code is kept from the host's files, network and processes
    runtime: str | None  # the host program that holds the sandbox: "bwrap", "runsc", or none
    # A session's files are in its directory on this machine (on Daytona: on its volume, the
    # directory only holds their layout).
    local_files: bool
    disk_quota: bool  # that directory gets its disk quota: an ext4 image mounted there
    # May be chosen through the settings API (unsafe-local only by the server's environment).
    api_settable: bool
    sandbox: SandboxFactory  # (settings, work_dir, labels, restore): a new, unstarted sandbox
    workspace: WorkspaceFactory  # a session's files as its sandbox sees them at /work
    checks: Callable[[Settings], Iterable[Check]]  # its health checks; may raise SandboxError
    start_up: Callable[[], None]  # said once at the service's start: defences this host lacks
    # Delete what the backend keeps of a deleted session beyond its local directory (blocking;
    # SandboxError when it cannot: `gc` finds it later).
    delete_session: Callable[[Settings, str], object]
    # Delete the backend's leftover sandboxes: all of fleet-rlm's (turns None) or those of the
    # given turns; returns what it deleted.
    gc: Callable[[Settings, Iterable[str] | None], list[str]]


# -- the local backends -----------------------------------------------------------------------

def _local_sandbox(settings: Settings, work_dir: Path | None, labels: dict[str, str] | None,
                   restore: str | None) -> Sandbox:
    from .local import LocalSandbox

    return LocalSandbox(settings, work_dir=work_dir, restore=restore)


def _gvisor_sandbox(settings: Settings, work_dir: Path | None, labels: dict[str, str] | None,
                    restore: str | None) -> Sandbox:
    from .gvisor import GVisorSandbox

    return GVisorSandbox(settings, work_dir=work_dir, restore=restore)


def _local_workspace(settings: Settings, directory: Callable[[], Path],
                     sandbox: Callable[[], Sandbox]) -> Workspace:
    from ..workspace import LocalWorkspace

    return LocalWorkspace(directory(), max_file_bytes=settings.max_workspace_file_mb << 20)


def _isolation_checks(settings: Settings) -> list[Check]:
    from .isolation import isolation_checks

    return isolation_checks(settings)


def _unsafe_checks(settings: Settings) -> list[Check]:
    return [warn("isolation", "sandbox isolation is OFF (FLEET_SANDBOX=unsafe-local)")]


def _warn_missing_defences() -> None:
    from .containment import warn_missing_defences

    warn_missing_defences()


def _nothing() -> None:
    return None


def _no_remote_session(settings: Settings, session_id: str) -> None:
    return None


def _sweep_local(settings: Settings, turns: Iterable[str] | None) -> list[str]:
    """The host-side directories of sandboxes whose process is gone (all of them: a turn's
    own are removed when it ends)."""
    from .containment import sweep_stale_roots

    return [str(root) for root in sweep_stale_roots()]


# -- Daytona ----------------------------------------------------------------------------------

def _daytona_sandbox(settings: Settings, work_dir: Path | None, labels: dict[str, str] | None,
                     restore: str | None) -> Sandbox:
    from .daytona import DaytonaSandbox

    if labels and labels.get("session"):
        return DaytonaSandbox.for_session(settings, labels, work_dir, restore)
    return DaytonaSandbox(settings, labels=labels)


def _daytona_workspace(settings: Settings, directory: Callable[[], Path],
                       sandbox: Callable[[], Sandbox]) -> Workspace:
    from .daytona_workspace import DaytonaWorkspace

    return DaytonaWorkspace(sandbox)  # type: ignore[arg-type]  # the session's DaytonaSandbox


def _daytona_checks(settings: Settings) -> Iterable[Check]:
    from .daytona_admin import check

    return check(settings)


def _daytona_delete_session(settings: Settings, session_id: str) -> bool:
    from .daytona_admin import delete_session_volume

    return delete_session_volume(settings, session_id)


def _daytona_gc(settings: Settings, turns: Iterable[str] | None) -> list[str]:
    from .daytona_admin import gc

    return gc(settings, turns)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("local", "the driver in a subprocess under bubblewrap (the default)",
            isolated=True, runtime="bwrap", local_files=True, disk_quota=True, api_settable=True,
            sandbox=_local_sandbox, workspace=_local_workspace, checks=_isolation_checks,
            start_up=_warn_missing_defences, delete_session=_no_remote_session,
            gc=_sweep_local),
    Backend("gvisor", "the local backend with gVisor's `runsc run` in place of bubblewrap",
            isolated=True, runtime="runsc", local_files=True, disk_quota=True, api_settable=True,
            sandbox=_gvisor_sandbox, workspace=_local_workspace, checks=_isolation_checks,
            start_up=_warn_missing_defences, delete_session=_no_remote_session,
            gc=_sweep_local),
    Backend("unsafe-local", "the driver in a plain subprocess as the server's own user, "
            "WITHOUT isolation (trusted code only)",
            isolated=False, runtime=None, local_files=True, disk_quota=False,
            api_settable=False,
            sandbox=_local_sandbox, workspace=_local_workspace, checks=_unsafe_checks,
            start_up=_nothing, delete_session=_no_remote_session, gc=_sweep_local),
    Backend("daytona", "a Daytona sandbox; a session's workspace on a Daytona volume",
            isolated=True, runtime=None, local_files=False, disk_quota=False,
            api_settable=True,
            sandbox=_daytona_sandbox, workspace=_daytona_workspace, checks=_daytona_checks,
            start_up=_nothing, delete_session=_daytona_delete_session, gc=_daytona_gc),
)}
NAMES: tuple[str, ...] = get_args(SandboxBackend)
if set(BACKENDS) != set(NAMES):
    raise RuntimeError(f"sandbox backends {sorted(BACKENDS)} and FLEET_SANDBOX's values "
                       f"{sorted(NAMES)} differ: every value needs one record")


def backend(name: str) -> Backend:
    """The record of the backend called `name`; SandboxError naming the valid names if none."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise SandboxError(f"unknown sandbox backend {name!r}: FLEET_SANDBOX is one of "
                           f"{', '.join(NAMES)}") from None
