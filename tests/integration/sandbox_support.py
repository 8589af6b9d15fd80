"""Fixtures, marks and probes shared by the sandbox tests (test_envelope*.py, the engine's)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
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


def count_files_put(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, how many times the host writes each value file (by name) into a local
    sandbox."""
    written: Counter[str] = Counter()
    put_file = LocalSandbox._put_file

    def counting_put_file(self: LocalSandbox, name: str, chunks: Iterable[bytes]) -> str:
        written[name] += 1
        return put_file(self, name, chunks)

    monkeypatch.setattr(LocalSandbox, "_put_file", counting_put_file)
    return written
