"""uv as the test command found it: `uv` on PATH, or `python3 -m uv` where scripts/setup.sh
installed it with pip (no tests here)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def uv_command() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    for python in ("python3", "python"):
        if shutil.which(python) and subprocess.run([python, "-m", "uv", "--version"],
                                                   capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.fail("uv is not installed (scripts/setup.sh installs it)")
