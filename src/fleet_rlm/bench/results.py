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
