"""Recorded runs: `fleet run --record` against the scripted server (standing in for a real
model), replayed offline by the scripted server, gives the same events; a committed recording
replays as a regression test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet_rlm.events import parse_event
from fleet_rlm.testing import ScriptedLMServer, dspy_reply, load_rules

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent.parent / "data" / "recorded_runs"
CONTEXT = "alpha beta gamma"
# Timings and ids differ between runs by nature; everything else must be equal.
# Each committed recording (tests/data/recorded_runs) and the answer its replay must give.
EXPECTED = {"shout_first_word": "ALPHA of 3"}
VARYING = {"turn_id", "node_id", "parent_id", "ts", "latency_s", "elapsed_s", "duration_s",
           "wall_s", "request_id"}


def step(iteration: int, code: str, **rule: Any) -> dict:
    return {"match": rf"iteration ## \]\]\n{iteration}/", "model": "root", "times": 1,
            "reply": dspy_reply(reasoning=f"step {iteration}", code=code), **rule}


def fleet_run(tmp_path: Path, api_base: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FLEET_ALLOW_UNPRICED_MODELS="true", FLEET_DATA_DIR=str(tmp_path / "data"),
               FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
               FLEET_API_KEY="sk-recordedrunsecret0123456789", FLEET_LM_RETRY_BASE_S="0.01")
    cmd = [sys.executable, "-m", "fleet_rlm.cli", "run", *args, "--json", "--api-base", api_base]
    return subprocess.run(cmd, cwd=tmp_path, env=env, text=True, capture_output=True,
                          input=CONTEXT, timeout=100)


def comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def events_of(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [comparable(parse_event(line).model_dump(mode="json"))
            for line in done.stdout.splitlines()]


RULES = [
    # A provider fault is part of the recording: the retry replays too.
    {"model": "root", "status": 503, "reply": "busy", "times": 1},
    step(1, "words = context.split()\nprint(len(words))"),
    step(2, "big = llm_query('upper: ' + words[0])\nprint(big)"),
    {"model": "sub", "match": "upper: alpha", "reply": "ALPHA", "times": 1},
    step(3, "SUBMIT(answer=big + ' of ' + str(len(words)))"),
]


def test_a_recorded_run_replays_to_the_same_events(tmp_path):
    recording = tmp_path / "run.jsonl"
    with ScriptedLMServer(RULES) as real:
        recorded = fleet_run(tmp_path, real.api_base, "Shout the first word.", "--context", "-",
                             "--record", str(recording))
        real.verify()
        calls = real.stats()["calls"]
    lines = recording.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "fleet-lm-recording" and header["question"] == "Shout the first word."
    assert len(lines) == 1 + calls == 1 + 5
    assert "recordedrunsecret" not in recording.read_text()  # the key never lands in the file
    with ScriptedLMServer(load_rules(recording)) as replay:
        replayed = fleet_run(tmp_path, replay.api_base, "Shout the first word.",
                             "--context", "-")
        replay.verify()
    first, second = events_of(recorded), events_of(replayed)
    assert first == second
    assert [e for e in first if e["type"] == "rlm_finished"][0]["answer"] == {
        "answer": "ALPHA of 3"}
    assert [e["http_status"] for e in first if e["type"] == "lm_call"][0] == 503


def test_a_replay_refuses_requests_the_recording_does_not_hold(tmp_path):
    recording = tmp_path / "run.jsonl"
    with ScriptedLMServer(RULES) as real:
        fleet_run(tmp_path, real.api_base, "Shout the first word.", "--context", "-",
                  "--record", str(recording))
    with ScriptedLMServer(load_rules(recording)) as replay:
        done = fleet_run(tmp_path, replay.api_base, "Another question.", "--context", "-")
        assert done.returncode != 0
        assert replay.stats()["unexpected"] >= 1


@pytest.mark.parametrize("recording", sorted(DATA.glob("*.jsonl")), ids=lambda p: p.stem)
def test_committed_recordings_replay(tmp_path, recording):
    header = json.loads(recording.read_text().splitlines()[0])
    with ScriptedLMServer(load_rules(recording)) as replay:
        done = fleet_run(tmp_path, replay.api_base, header["question"], "--context", "-")
        replay.verify()
    finished = [e for e in events_of(done) if e["type"] == "rlm_finished"]
    assert finished and finished[-1]["status"] == "ok"
    assert finished[-1]["answer"] == {"answer": EXPECTED[recording.stem]}


def test_a_recording_that_cannot_be_written_is_a_clear_error(tmp_path):
    done = fleet_run(tmp_path, "http://127.0.0.1:9/v1", "q", "--record",
                     str(tmp_path / "missing" / "run.jsonl"))
    assert done.returncode == 1
    assert "cannot write the recording" in done.stderr


def record_committed(directory: Path = DATA) -> None:
    """Re-record tests/data/recorded_runs/shout_first_word.jsonl against RULES. A committed
    recording matches requests by their exact text, so a change to the engine's prompts needs
    a new one: `uv run python tests/integration/test_recorded_runs.py`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, ScriptedLMServer(RULES) as real:
        done = fleet_run(Path(tmp), real.api_base, "Shout the first word.", "--context", "-",
                         "--record", str(directory / "shout_first_word.jsonl"))
        assert done.returncode == 0, done.stderr
        real.verify()


if __name__ == "__main__":
    record_committed()
