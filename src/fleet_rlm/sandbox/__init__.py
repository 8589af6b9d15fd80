"""Where model-written code runs: one Sandbox protocol, several backends, one driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from .backends import Backend, backend
from .base import ExecResult, Sandbox, SandboxError
from .interpreter import SandboxInterpreter


def create_sandbox(settings: Settings, work_dir: Path | None = None,
                   labels: dict[str, str] | None = None, restore: str | None = None) -> Sandbox:
    """A new, not yet started sandbox of the configured backend. `labels` (session, turn,
    node) tag remote sandboxes so `fleet daytona gc` can find a turn's leftovers. On Daytona a
    session's sandbox (a `session` label) keeps its workspace on the session's volume and may
    be replaced between calls; a driver that replaces one that died (any backend) runs
    `restore` before any other code."""
    return backend(settings.sandbox).sandbox(settings, work_dir, labels, restore)


def interpreter_factory(settings: Settings, **kwargs) -> Callable[[], SandboxInterpreter]:
    """A zero-argument factory for dspy.RLM(interpreter_factory=...): a fresh sandbox per call."""

    def make() -> SandboxInterpreter:
        return SandboxInterpreter(create_sandbox(settings), timeout=settings.exec_timeout_s,
                                  **kwargs)

    # dspy.RLM reads the interpreter's instructions off the factory
    make.execution_instructions = SandboxInterpreter.execution_instructions  # type: ignore[attr-defined]
    return make


__all__ = ["Backend", "ExecResult", "Sandbox", "SandboxError", "SandboxInterpreter", "backend",
           "create_sandbox", "interpreter_factory"]
