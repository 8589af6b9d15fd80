"""The health of the configured sandbox backend, as `fleet doctor` prints it and the server's
settings check (POST /settings/test-sandbox) returns it: one list of checks, each a named
fact that holds (ok), holds with a fallback said loudly (warn), or is broken (fail), with what
to do about it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ..config import Settings
from .base import SandboxError

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One fact about the backend. `name` is stable (e.g. "cgroups", "daytona_api"), `detail`
    the sentence a person reads."""

    name: str
    status: Status
    detail: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"a check's status is one of {', '.join(STATUSES)}, "
                             f"not {self.status!r}")

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str) -> Check:
    return Check(name, "warn", detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, "fail", detail)


def iter_checks(settings: Settings) -> Iterator[Check]:
    """The checks of `settings.sandbox`'s backend, each as soon as it is known. Never raises: a
    backend whose checks cannot run (no sandbox starts, a missing dependency) ends with a
    failed check saying why."""
    from .backends import backend

    try:
        record = backend(settings.sandbox)
    except SandboxError as exc:
        yield fail("backend", str(exc))
        return
    try:
        yield from record.checks(settings)
    except SandboxError as exc:
        yield fail("runtime", str(exc))
    except Exception as exc:  # noqa: BLE001 - a check that cannot run is a failed check
        yield fail("runtime", f"the {record.name} sandbox's checks could not run: "
                              f"{type(exc).__name__}: {exc}")


def sandbox_checks(settings: Settings) -> list[Check]:
    """All of `iter_checks`."""
    return list(iter_checks(settings))
