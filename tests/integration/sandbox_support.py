"""Fixtures and marks shared by the sandbox envelope tests (test_envelope*.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.sandbox import create_sandbox
from fleet_rlm.sandbox.local import LocalSandbox

MB = 1024 * 1024

# Each defence holds for bubblewrap and for gVisor alike (where runsc is installed).
BOTH = pytest.mark.parametrize("backend", [
    "local", pytest.param("gvisor", marks=pytest.mark.skipif(
        shutil.which("runsc") is None, reason="gVisor's runsc is not installed"))])


@pytest.fixture
def backend() -> str:
    return "local"


@pytest.fixture
def make(backend: str) -> Iterator:
    """Sandboxes of `backend`, started unless `start=False`, closed after the test."""
    made: list[LocalSandbox] = []

    def sandbox(work_dir: Path | None = None, start: bool = True, **settings: Any) -> LocalSandbox:
        defaults = {"exec_kill_grace_s": 1.0, "max_output_chars": 20_000, "sandbox": backend}
        box = create_sandbox(Settings(**{**defaults, **settings}), work_dir=work_dir)
        assert isinstance(box, LocalSandbox)  # GVisorSandbox is one too
        made.append(box)
        if start:
            box.start()
        return box

    yield sandbox
    for box in made:
        box.close()
