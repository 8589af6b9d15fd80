"""`fleet optimize` and `fleet programs` as real subprocesses on the engine: a JSONL dataset, a
GEPA run over the engine (the reflection model scripted too), promote, `fleet run` carrying the
promoted instructions, roll back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_rlm.testing import dspy_json_reply, dspy_reply

pytestmark = pytest.mark.slow

CAPITALS = [("France", "PARIS"), ("Italy", "ROME"), ("Spain", "MADRID"), ("Japan", "TOKYO")]
RULE = "Submit the city's name in UPPERCASE letters only."


def engine_rules() -> list[dict]:
    """The engine's code step submits the capital in capitals when its instructions carry
    RULE, in title case otherwise; the reflection model proposes RULE."""
    rules: list[dict] = [{"model": "reflect", "reply": dspy_json_reply(new_instruction=RULE)}]
    for country, city in CAPITALS:
        asked = rf"(?=.*capital of {country}\?)(?=.*\[\[ ## code ## \]\])"
        for carries, answer in ((rf"(?=.*{re.escape(RULE)})", city), ("", city.title())):
            rules.append({"model": "root", "match": rf"^{carries}{asked}",
                          "reply": dspy_reply(reasoning="known",
                                              code=f"SUBMIT(answer={answer!r})")})
    return rules


def fleet(tmp_path: Path, server, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FLEET_ALLOW_UNPRICED_MODELS="true", FLEET_DATA_DIR=str(tmp_path / "data"),
               FLEET_ROOT_MODEL="openai/root", FLEET_API_BASE=server.api_base,
               FLEET_API_KEY="test", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "fleet_rlm.cli", *args], cwd=tmp_path,
                          env=env, text=True, capture_output=True, timeout=300)


def test_optimise_the_engine_promote_it_run_it_and_roll_back(tmp_path, scripted_lm):
    server = scripted_lm(engine_rules())
    data = tmp_path / "capitals.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is the capital of {c}?",
                                          "context": f"{c} is a country.", "answer": city})
                              for c, city in CAPITALS))
    too_small = tmp_path / "small.jsonl"
    too_small.write_text(data.read_text().splitlines()[0])

    refused = fleet(tmp_path, server, "optimize", "dataset", "create", "small", "--jsonl",
                    str(too_small))
    assert refused.returncode == 1 and "'small' has 1 example(s)" in refused.stderr
    made = fleet(tmp_path, server, "optimize", "dataset", "create", "capitals", "--jsonl",
                 str(data))
    assert made.returncode == 0, made.stderr
    assert "capitals: 4 examples from jsonl" in made.stdout
    assert "capitals" in fleet(tmp_path, server, "optimize", "dataset", "list").stdout

    unknown = fleet(tmp_path, server, "optimize", "run", "rlm", "--dataset", "capitals",
                    "--metric", "fuzzy")
    assert unknown.returncode == 1 and "unknown metric 'fuzzy'" in unknown.stderr
    assert server.stats()["calls"] == 0

    ran = fleet(tmp_path, server, "optimize", "run", "rlm", "--dataset", "capitals",
                "--metric", "exact", "--max-metric-calls", "10",
                "--reflection-model", "openai/reflect")
    assert ran.returncode == 0, ran.stderr
    assert "rlm:1" in ran.stdout and "validation 0.000 -> 1.000" in ran.stdout
    diff = fleet(tmp_path, server, "programs", "diff", "rlm:1")
    assert f"+{RULE}" in diff.stdout

    assert fleet(tmp_path, server, "programs", "promote", "rlm:1").returncode == 0
    listed = fleet(tmp_path, server, "programs", "list").stdout
    assert re.search(r"rlm:1 .* yes", listed) and "agent: the baseline runs" in listed

    server.reset()
    answered = fleet(tmp_path, server, "run", "What is the capital of Italy?", "--quiet")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == "ROME\n"
    assert RULE in server.requests()[0]["text"]

    # The Python API runs the promoted version too, unless told to run the baseline.
    from fleet_rlm import RecursiveRLM
    from fleet_rlm.config import Settings

    settings = Settings(data_dir=tmp_path / "data", root_model="openai/root",
                        api_base=server.api_base, api_key="test", allow_unpriced_models=True)
    for program, said in (("promoted", "ROME"), (None, "Rome")):
        server.reset()
        out = RecursiveRLM(settings=settings, program=program)(
            context="Italy is a country.", question="What is the capital of Italy?")
        assert (out.status, out.answer) == ("ok", said), out.error
        assert (RULE in server.requests()[0]["text"]) == (program == "promoted")

    back = fleet(tmp_path, server, "programs", "rollback", "rlm")
    assert back.returncode == 0 and "rlm: the baseline runs" in back.stdout
    assert fleet(tmp_path, server, "run", "What is the capital of Italy?",
                 "--quiet").stdout == "Rome\n"
