"""Sandbox directories a killed host left behind are swept; those of live processes stay."""

from __future__ import annotations

import os
import subprocess
import sys

from fleet_rlm.sandbox.containment import process_identity, sweep_stale_roots


def _root(tmp_path, name: str, owner: str | None):
    root = tmp_path / f"fleet-sbx-{name}"
    (root / "work").mkdir(parents=True)
    if owner is not None:
        (root / "owner").write_text(owner)
    return root


def test_only_directories_of_processes_that_are_gone_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_identity = process_identity(dead.pid)
    dead.wait()
    mine = process_identity(os.getpid())
    pid, started = mine.split()
    roots = {
        "dead": _root(tmp_path, "dead", dead_identity or f"{dead.pid} 1"),
        "reused": _root(tmp_path, "reused", f"{pid} {int(started) + 1}"),  # same pid, other run
        "live": _root(tmp_path, "live", mine),
        "unknown": _root(tmp_path, "unknown", None),
    }
    other = tmp_path / "not-a-sandbox"
    other.mkdir()
    (other / "owner").write_text(dead_identity or "1 1")

    removed = sweep_stale_roots(tmp_path)

    assert sorted(removed) == sorted([roots["dead"], roots["reused"]])
    assert not roots["dead"].exists() and not roots["reused"].exists()
    assert roots["live"].exists() and roots["unknown"].exists() and other.exists()
