"""A results directory's records: OUT/results.jsonl, one JSON line per finished task. The runner
appends to it; the report reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every record in OUT/results.jsonl; a line torn by a killed run is skipped (its task runs
    again)."""
    path = out / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


CONTEXTS = "contexts"


def save_context(out: Path, sha256: str, text: str) -> None:
    """A task's context, once per content in OUT/contexts/, so its results can become a
    dataset to optimise on (`fleet optimize dataset create --bench OUT`)."""
    path = out / CONTEXTS / f"{sha256}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def load_context(out: Path, sha256: str) -> str:
    path = out / CONTEXTS / f"{sha256}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the context of a recorded task is missing")
    return path.read_text(encoding="utf-8")
