"""`fleet bench ... --dry-run`: the tasks and the projected cost, with no model called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fleet_rlm.bench import runner
from fleet_rlm.bench.tasks import approx_tokens

PRICES = {"openai/root": {"input_per_mtok": 2.0, "output_per_mtok": 8.0},
          "openai/sub": {"input_per_mtok": 0.5, "output_per_mtok": 1.0}}


def fleet(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    # An API base nothing listens on: a call would fail, so a clean exit shows none was made.
    clean.update({"FLEET_DATA_DIR": str(tmp_path / "data"), "FLEET_ROOT_MODEL": "openai/root",
                  "FLEET_SUB_MODEL": "openai/sub", "FLEET_API_BASE": "http://127.0.0.1:9/v1",
                  "FLEET_PRICES": json.dumps(PRICES), "COLUMNS": "400", **env})
    return subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "bench", *args], cwd=tmp_path,
                          env=clean, text=True, capture_output=True, timeout=120)


def test_direct_projection_is_the_prompts_at_the_models_price(tmp_path: Path) -> None:
    tasks = runner.make_tasks("oolong", 4, 0, [2048, 4096])
    tokens = sum(approx_tokens(t.prompt) for t in tasks)
    done = fleet(tmp_path, "oolong", "--dry-run", "--mode", "direct", "--n", "4", "--lengths",
                 "2048,4096", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert f"4 tasks, {tokens:,} context tokens in all, model openai/root" in done.stdout
    assert f"projected cost: ${tokens * 2.0 / 1e6:.4f} (prompts)" in done.stdout
    assert "2,048 tokens: 2 tasks" in done.stdout and "4,096 tokens: 2 tasks" in done.stdout
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_rlm_projection_is_a_range_up_to_the_limits(tmp_path: Path) -> None:
    tasks = runner.make_tasks("sniah", 3, 0, [8192])
    context = [approx_tokens(t.prompt) for t in tasks]
    low = sum(2000 * 2.0 / 1e6 + c * 0.5 / 1e6 for c in context)
    high = sum(min(0.25, min(30_000, 3 * (c + 4000)) * 8.0 / 1e6) for c in context)
    done = fleet(tmp_path, "sniah", "--dry-run", "--n", "3", "--lengths", "8192",
                 FLEET_MAX_CALLS="3", FLEET_MAX_TOKENS="30000", FLEET_MAX_USD="0.25")
    assert done.returncode == 0, done.stderr
    assert f"projected cost: ${low:.4f} to ${high:.4f}" in done.stdout


def test_an_unpriced_model_is_named(tmp_path: Path) -> None:
    done = fleet(tmp_path, "oolong", "--dry-run", "--mode", "direct", "--n", "1", "--lengths",
                 "2048", FLEET_ROOT_MODEL="openai/unheard-of-model")
    assert done.returncode == 0, done.stderr
    assert "no price for openai/unheard-of-model" in done.stdout


def test_the_lenient_scorer_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    done = fleet(tmp_path, "sniah", "--dry-run", "--scorer", "lenient", "--n", "1")
    assert done.returncode == 1 and "applies to oolong only" in done.stderr
