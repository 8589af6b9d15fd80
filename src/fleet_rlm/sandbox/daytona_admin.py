"""The Daytona client every sandbox of the process shares, its errors turned into what to do,
and the work around the sandboxes: the driver snapshot, `fleet daytona gc`, the health checks."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from importlib.metadata import version
from typing import Any, TypeVar

from ..config import Settings
from .base import DRIVER_SOURCE, SandboxError
from .health import Check, fail, ok, warn

INSTALL_HINT = "the Daytona backend needs the Daytona SDK: pip install 'fleet-rlm[daytona]'"
DEFAULT_API_URL = "https://app.daytona.io/api"
LABEL = "fleet-rlm"
SNAPSHOT_PREFIX = "fleet-rlm-driver-"
SNAPSHOT_BASE_IMAGE = "python:3.12-slim"
SNAPSHOT_DRIVER = "/opt/fleet/driver.py"
# The working directory code is told it has, as on the local backend; the snapshot makes it,
# and a session's sandbox mounts the session's volume there.
WORK_DIR = "/work"
# 429 and 503 mean the request never reached a sandbox, so sending it again is safe.
RETRIES = 4
RETRY_BASE_S = 1.0
RETRY_MAX_S = 30.0

T = TypeVar("T")

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def sdk() -> Any:
    try:
        import daytona
    except ImportError as exc:
        raise SandboxError(INSTALL_HINT) from exc
    return daytona


def client(settings: Settings) -> Any:
    """One `daytona.Daytona` per key, URL and target, shared by every sandbox of the process."""
    daytona = sdk()
    key = (settings.daytona_api_key, settings.daytona_api_url, settings.daytona_target)
    with _clients_lock:
        if key not in _clients:
            try:
                _clients[key] = daytona.Daytona(daytona.DaytonaConfig(
                    api_key=settings.daytona_api_key, api_url=settings.daytona_api_url,
                    target=settings.daytona_target))
            except daytona.DaytonaError as exc:
                raise explain(exc, settings, "connect") from None
        return _clients[key]


def api_url(settings: Settings) -> str:
    return settings.daytona_api_url or os.environ.get("DAYTONA_API_URL") or DEFAULT_API_URL


def explain(exc: Exception, settings: Settings, action: str) -> SandboxError:
    """A SandboxError for a failed Daytona call, with what to do about it."""
    status = getattr(exc, "status_code", None)
    text = str(exc)
    lowered = text.lower()
    url = api_url(settings)
    if isinstance(exc, sdk().DaytonaAuthenticationError) and status is None:
        hint = ("no Daytona API key: set DAYTONA_API_KEY (or FLEET_DAYTONA_API_KEY) to a key "
                "from https://app.daytona.io/dashboard/keys")
    elif status in (403, 429) and "quota" in lowered:
        hint = ("the Daytona organisation's quota is used up: delete leftover sandboxes with "
                "`fleet daytona gc`, lower the fan-out (FLEET_MAX_DEPTH), or raise the quota")
    elif status == 401:
        hint = ("Daytona rejected the API key: check DAYTONA_API_KEY (or FLEET_DAYTONA_API_KEY) "
                "and that it was issued for this API URL")
    elif status == 403:
        hint = ("the API key lacks a permission fleet-rlm needs: write and delete on sandboxes, "
                "read and write on volumes (a session keeps its workspace on one)")
    elif status == 429:
        hint = f"Daytona kept rate-limiting after {RETRIES} retries; try again later"
    elif _unreachable(exc):
        hint = (f"cannot reach the Daytona API at {url}: check DAYTONA_API_URL "
                f"(default {DEFAULT_API_URL}) and the network or proxy")
    elif status in (400, 404, 422) and ("region" in lowered or "target" in lowered):
        hint = (f"Daytona does not know the target {settings.daytona_target!r}: set "
                "DAYTONA_TARGET to a region of the organisation (e.g. us, eu), or unset it")
    elif isinstance(exc, sdk().DaytonaTimeoutError):
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

    kinds = (sdk().DaytonaConnectionError, ConnectionError, urllib3.exceptions.MaxRetryError,
             urllib3.exceptions.NewConnectionError, httpx.ConnectError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retrying(call: Callable[[], T]) -> T:
    """`call()`, sent again after a 429 or 503 (not a quota error), with backoff."""
    daytona = sdk()
    attempt = 0
    while True:
        try:
            return call()
        except (daytona.DaytonaRateLimitError, daytona.DaytonaServiceUnavailableError) as exc:
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


# -- the driver snapshot ----------------------------------------------------------------------

def snapshot_name() -> str:
    """The snapshot name for this version of the driver; a changed driver gets a new one."""
    return SNAPSHOT_PREFIX + hashlib.sha256(DRIVER_SOURCE.read_bytes()).hexdigest()[:12]


def snapshot_image() -> Any:
    """A Python image with driver.py baked in (inline, so no build context to upload) and a
    writable /work."""
    encoded = base64.b64encode(DRIVER_SOURCE.read_bytes()).decode("ascii")
    directory = os.path.dirname(SNAPSHOT_DRIVER)
    return sdk().Image.base(SNAPSHOT_BASE_IMAGE).run_commands(
        f"mkdir -p -m 1777 {WORK_DIR} && mkdir -p {directory} "
        f"&& echo {encoded} | base64 -d > {SNAPSHOT_DRIVER} && chmod 644 {SNAPSHOT_DRIVER} "
        f"&& python3 -I -m py_compile {SNAPSHOT_DRIVER}")


def create_snapshot(settings: Settings, on_logs: Callable[[str], None] | None = None
                    ) -> tuple[str, bool]:
    """Create this driver's snapshot. Returns (name, created); False when it already existed."""
    daytona = sdk()
    name = snapshot_name()
    try:
        client(settings).snapshot.create(
            daytona.CreateSnapshotParams(name=name, image=snapshot_image()), on_logs=on_logs)
    except daytona.DaytonaConflictError:
        return name, False
    except daytona.DaytonaError as exc:
        raise explain(exc, settings, f"create snapshot {name}") from None
    return name, True


# -- cleanup ----------------------------------------------------------------------------------

def session_volume(session_id: str) -> str:
    """The name of the Daytona volume holding a session's workspace."""
    return f"{LABEL}-{session_id}"


def gc(settings: Settings, turns: Iterable[str] | None = None) -> list[str]:
    """Delete fleet-rlm sandboxes (all, or those of `turns`); return the ids deleted. Session
    volumes stay: a session's next sandbox mounts its volume again (`gc_volumes` deletes those
    of sessions that are gone)."""
    queries = ([{LABEL: "true"}] if turns is None
               else [{LABEL: "true", f"{LABEL}-turn": turn} for turn in turns])
    try:
        return [sandbox_id for labels in queries for sandbox_id in _delete_sandboxes(
            settings, labels)]
    except sdk().DaytonaError as exc:
        raise explain(exc, settings, "delete sandboxes") from None


def _delete_sandboxes(settings: Settings, labels: dict[str, str]) -> list[str]:
    daytona = sdk()
    deleted = []
    for sandbox in list(client(settings).list(daytona.ListSandboxesQuery(labels=labels))):
        if sandbox.state not in (daytona.SandboxState.DESTROYED,
                                 daytona.SandboxState.DESTROYING):
            retrying(sandbox.delete)
            deleted.append(sandbox.id)
    return deleted


def delete_session_volume(settings: Settings, session_id: str) -> bool:
    """Delete a deleted session's volume, and any sandbox still mounting it; False when it had
    none (the session never ran code on Daytona)."""
    daytona = sdk()
    name = session_volume(session_id)
    try:
        _delete_sandboxes(settings, {LABEL: "true", f"{LABEL}-volume": name})
        volumes = client(settings).volume
        try:
            volume = retrying(lambda: volumes.get(name))
        except daytona.DaytonaNotFoundError:
            return False
        retrying(lambda: volumes.delete(volume))
    except daytona.DaytonaError as exc:
        raise explain(exc, settings, f"delete volume {name}") from None
    return True


def gc_volumes(settings: Settings, live_sessions: Callable[[], Collection[str]]) -> list[str]:
    """Delete the volumes of sessions that no longer exist; return their names.

    `live_sessions()` gives the ids of every session there is; it is called once the volumes
    are listed, so a session made meanwhile is in it (its volume comes after it) and no live
    session loses its volume. A volume still mounted by a sandbox (Daytona refuses, 409), or not
    ready, stays."""
    daytona = sdk()
    prefix = f"{LABEL}-"
    try:
        volumes = client(settings).volume
        ours = [v for v in volumes.list() if v.name.startswith(prefix)]
        live = {session_volume(session_id) for session_id in live_sessions()}
        deleted = []
        for volume in ours:
            if volume.name in live or volume.state.value not in ("ready", "error"):
                continue
            try:
                retrying(functools.partial(volumes.delete, volume))
            except daytona.DaytonaConflictError:
                continue
            deleted.append(volume.name)
    except daytona.DaytonaError as exc:
        raise explain(exc, settings, "delete volumes") from None
    return deleted


# -- health checks -----------------------------------------------------------------------------

def check(settings: Settings) -> Iterator[Check]:
    """The health checks of FLEET_SANDBOX=daytona (`fleet doctor`, the server's sandbox check),
    one at a time: what works, a note, or what failed and what to do. Without the SDK or the
    API there is nothing more to check."""
    try:
        daytona = sdk()
    except SandboxError as exc:
        yield fail("daytona_sdk", str(exc))
        return
    yield ok("daytona_sdk", f"Daytona SDK {version('daytona')}")
    url = api_url(settings)
    try:
        api = client(settings)
        ours = list(api.list(daytona.ListSandboxesQuery(labels={LABEL: "true"})))
        volumes = [v for v in api.volume.list() if v.name.startswith(f"{LABEL}-")]
    except SandboxError as exc:
        yield fail("daytona_api", str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the SDK lets some transport errors through raw
        yield fail("daytona_api", str(explain(exc, settings,
                                              f"list sandboxes and volumes at {url}")))
        return
    yield ok("daytona_api", f"the API key works at {url}: {len(ours)} fleet-rlm sandbox(es), "
                            f"{len(volumes)} session volume(s)")
    yield from _check_target(settings, api)
    yield from _check_snapshot(settings, api)


def _check_target(settings: Settings, api: Any) -> Iterator[Check]:
    from daytona_api_client import OrganizationsApi
    from daytona_api_client.exceptions import ApiException

    target = settings.daytona_target
    try:  # the SDK has no call for this; the API client it wraps does
        regions = OrganizationsApi(api._api_client).list_available_regions()  # noqa: SLF001
    except ApiException as exc:
        yield warn("daytona_target", f"target {target or '(the organisation default)'}: not "
                                     f"checked, the key cannot list regions ({exc.status})")
        return
    names = sorted({r.name for r in regions} | {r.id for r in regions})
    if target is None:
        yield ok("daytona_target",
                 f"target: the organisation's default (available: {', '.join(names)})")
    elif target in names:
        yield ok("daytona_target", f"target {target}")
    else:
        yield fail("daytona_target", f"Daytona does not know the target {target!r}: set "
                                     f"DAYTONA_TARGET to one of {', '.join(names)}, or unset it")


def _check_snapshot(settings: Settings, api: Any) -> Iterator[Check]:
    name = settings.daytona_snapshot
    if not name:
        yield warn("daytona_snapshot", "no snapshot: the driver is uploaded at each start "
                   "(`fleet daytona snapshot` makes one, then set FLEET_DAYTONA_SNAPSHOT)")
        return
    try:
        api.snapshot.get(name)
    except sdk().DaytonaError as exc:
        yield fail("daytona_snapshot", str(explain(exc, settings, f"find snapshot {name}")))
        return
    if name == snapshot_name():
        yield ok("daytona_snapshot", f"snapshot {name} carries this driver")
    else:
        yield warn("daytona_snapshot", f"snapshot {name} does not carry this version of the "
                                       "driver, so it is uploaded at each start; `fleet daytona "
                                       f"snapshot` builds {snapshot_name()}")
