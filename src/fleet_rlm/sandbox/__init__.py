"""Where model-written code runs: one Sandbox protocol, several backends, one driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from .base import ExecResult, Sandbox, SandboxError
from .interpreter import SandboxInterpreter


def create_sandbox(settings: Settings, work_dir: Path | None = None,
                   labels: dict[str, str] | None = None, restore: str | None = None) -> Sandbox:
    """A new, not yet started sandbox of the configured backend. `labels` (session, turn,
    node) tag remote sandboxes so `fleet daytona gc` can find a turn's leftovers. On Daytona a
    session's sandbox (a `session` label) keeps its workspace on the session's volume and may
    be replaced between calls; a driver that replaces one that died (any backend) runs
    `restore` before any other code."""
    if settings.sandbox in ("local", "unsafe-local"):
        from .local import LocalSandbox

        return LocalSandbox(settings, work_dir=work_dir, restore=restore)
    if settings.sandbox == "gvisor":
        from .gvisor import GVisorSandbox

        return GVisorSandbox(settings, work_dir=work_dir, restore=restore)
    if settings.sandbox == "daytona":
        from .daytona import DaytonaSandbox

        if labels and labels.get("session"):
            return DaytonaSandbox.for_session(settings, labels, work_dir, restore)
        return DaytonaSandbox(settings, labels=labels)
    raise SandboxError(
        f"sandbox backend {settings.sandbox!r} is not available in this version; "
        "use FLEET_SANDBOX=local")


def interpreter_factory(settings: Settings, **kwargs) -> Callable[[], SandboxInterpreter]:
    """A zero-argument factory for dspy.RLM(interpreter_factory=...): a fresh sandbox per call."""

    def make() -> SandboxInterpreter:
        return SandboxInterpreter(create_sandbox(settings), timeout=settings.exec_timeout_s,
                                  **kwargs)

    make.execution_instructions = SandboxInterpreter.execution_instructions
    return make


__all__ = ["ExecResult", "Sandbox", "SandboxError", "SandboxInterpreter", "create_sandbox",
           "interpreter_factory"]
