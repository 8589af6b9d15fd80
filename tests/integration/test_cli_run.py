"""`fleet run` as a real subprocess against the scripted LM server, and the tree renderer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from fleet_rlm.cli.render import TreeRenderer
from fleet_rlm.events import EventStream, NodeRef, parse_event
from fleet_rlm.testing import dspy_reply

pytestmark = pytest.mark.slow


def step(iteration: int, code: str, **rule) -> dict:
    """A root-model rule answering iteration `iteration` of the root RLM with `code`."""
    return {"match": rf"iteration ## \]\]\n{iteration}/", "model": "root", "times": 1,
            "reply": dspy_reply(reasoning=f"step {iteration}", code=code), **rule}


def fleet_run(tmp_path: Path, server, *args: str, stdin: str | None = None,
              wait: bool = True, env: dict[str, str] | None = None,
              **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    extra, env = env or {}, {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_ALLOW_UNPRICED_MODELS"] = "true"  # the scripted models have no price
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), FLEET_ROOT_MODEL="openai/root",
               FLEET_SUB_MODEL="openai/sub", FLEET_API_KEY="test", **extra)
    cmd = [sys.executable, "-m", "fleet_rlm.cli", "run", *args, "--api-base", server.api_base]
    if not wait:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **popen)
    return subprocess.run(cmd, cwd=tmp_path, env=env, text=True, capture_output=True,
                          input=stdin, timeout=100)


def test_a_bad_limit_is_one_clear_line(tmp_path, scripted_lm):
    done = fleet_run(tmp_path, scripted_lm([]), "q", "--max-calls", "0")
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: bad setting: max_calls (--max-calls, FLEET_MAX_CALLS):"
                                   " input should be greater than 0, got 0")


def test_without_a_model_the_fleet_settings_are_named(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLEET_") and not k.endswith("_API_KEY")}
    done = subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "run", "q"], cwd=tmp_path,
                          env={**env, "FLEET_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "400"},
                          text=True, capture_output=True, timeout=100)
    assert done.returncode == 1
    assert done.stderr.startswith("error: no model is configured for openai/gpt-4o-mini: set "
                                  "FLEET_API_KEY (or OPENAI_API_KEY)")
    assert "FLEET_API_BASE" in done.stderr and "dspy.LM" not in done.stderr


def test_traceback_cell_numbers_are_the_trees_iterations(tmp_path, scripted_lm):
    server = scripted_lm([step(1, "x = 1"), step(2, "y = 1 / 0"),
                          step(3, "SUBMIT(answer='done')")])
    done = fleet_run(tmp_path, server, "q", "--json")
    assert done.returncode == 0, done.stderr
    failed = [e for e in map(parse_event, done.stdout.splitlines())
              if e.type == "code_output" and e.error_type]
    assert [e.iteration for e in failed] == [2]
    assert 'File "<cell-2>", line 1' in failed[0].traceback, failed[0].traceback


def test_a_sub_call_preview_shows_the_head_of_its_prompt(tmp_path, scripted_lm):
    code = "print(llm_query('Count the needles in: ' + 'hay ' * 2000))\nSUBMIT(answer='done')"
    server = scripted_lm([step(1, code), {"model": "sub", "reply": "none"}])
    done = fleet_run(tmp_path, server, "q", "--json")
    assert done.returncode == 0, done.stderr
    [sub] = [e for e in map(parse_event, done.stdout.splitlines())
             if e.type == "lm_call" and e.role == "sub"]
    assert sub.prompt_preview.startswith("Count the needles in: hay hay"), sub.prompt_preview[:80]


def test_simple_run_prints_the_answer(tmp_path, scripted_lm):
    server = scripted_lm([step(1, "print(len(context))\nSUBMIT(answer='forty-two')")])
    (tmp_path / "doc.txt").write_text("some context")
    done = fleet_run(tmp_path, server, "what is it?", "--context", "doc.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "forty-two\n"
    assert "ok" in done.stderr and "SUBMIT(answer='forty-two')" in done.stderr  # the final tree
    server.verify()


def test_json_is_the_event_stream(tmp_path, scripted_lm):
    server = scripted_lm([step(1, "x = 6 * 7\nprint(x)"), step(2, "SUBMIT(answer=str(x))")])
    done = fleet_run(tmp_path, server, "q", "--json", "--context", "-", stdin="from stdin")
    assert done.returncode == 0, done.stderr
    events = [parse_event(line) for line in done.stdout.splitlines()]
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    assert events[0].type == "rlm_started" and events[0].inputs["context"].chars == 10
    assert [e.type for e in events].count("rlm_iteration") == 2
    last = events[-1]
    assert last.type == "rlm_finished" and last.parent_id is None
    assert last.status == "ok" and last.answer == {"answer": "42"}


def test_several_context_files_become_a_dict(tmp_path, scripted_lm):
    code = "print(sorted(context))\nSUBMIT(answer=type(context).__name__ + str(sorted(context)))"
    server = scripted_lm([step(1, code)])
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("beta")
    done = fleet_run(tmp_path, server, "q", "-c", "a.txt", "-c", "sub/b.md")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "dict['a.txt', 'b.md']"


def test_budget_exhausted_exits_2_with_the_partial_output(tmp_path, scripted_lm):
    server = scripted_lm([step(1, "print('halfway there')"), step(2, "SUBMIT(answer='never')")])
    done = fleet_run(tmp_path, server, "q", "--max-calls", "1")
    assert done.returncode == 2, done.stderr
    assert "halfway there" in done.stdout
    assert "budget exceeded: calls" in done.stderr
    assert server.stats()["calls"] == 1


def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path, scripted_lm):
    server = scripted_lm([step(1, "SUBMIT(answer='too late')", delay_ms=10_000)])
    proc = fleet_run(tmp_path, server, "q", wait=False)
    try:
        deadline = time.monotonic() + 60
        while server.stats()["calls"] == 0:  # the slow call is in flight
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never called the model"
            time.sleep(0.05)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=8)
        assert time.monotonic() - interrupted < 5
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "cancelled" in stderr and "Traceback" not in stderr
    assert "too late" not in stdout


@pytest.mark.parametrize(("first", "lost"), [("kept = 5\nprint(kept)", "kept"),
                                             ("print('nothing kept')", None)])
def test_ctrl_c_mid_cell_says_stopped_and_names_only_lost_variables(tmp_path, scripted_lm,
                                                                    first, lost):
    server = scripted_lm([step(1, first),
                          step(2, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")])
    proc = fleet_run(tmp_path, server, "q", "--json", wait=False)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the second cell starts once its iteration is reported
            if '"rlm_iteration"' in line and '"iteration":2' in line.replace(" ", ""):
                break
        time.sleep(1.5)  # the cell is sleeping in the sandbox
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    outputs = [parse_event(line) for line in stdout.splitlines() if '"code_output"' in line]
    stopped = outputs[-1]
    assert stopped.error_type == "Stopped", stopped
    assert "SandboxDied" not in stdout + stderr
    if lost:
        assert stopped.error_message == f"the cell was stopped; its variables are lost: {lost}"
    else:
        assert stopped.error_message == "the cell was stopped"


@pytest.mark.parametrize("flag", ["--max-wall-s", "--timeout"])
def test_the_wall_limit_stops_a_call_in_flight_and_exits_2(tmp_path, scripted_lm, flag):
    """--timeout, the deprecated name of --max-wall-s, still works, with a warning."""
    server = scripted_lm([step(1, "SUBMIT(answer='too late')", delay_ms=30_000)])
    started = time.monotonic()
    done = fleet_run(tmp_path, server, "q", flag, "2")
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 25
    assert "too late" not in done.stdout and "Traceback" not in done.stderr
    assert ("--timeout is deprecated; use --max-wall-s" in done.stderr) == (flag == "--timeout")
    assert "budget exceeded: wall_s" in done.stderr


def test_both_names_of_the_wall_limit_are_refused(tmp_path, scripted_lm):
    done = fleet_run(tmp_path, scripted_lm([]), "q", "--max-wall-s", "2", "--timeout", "3")
    assert done.returncode == 1 and "give --max-wall-s only" in done.stderr


def test_an_unpriced_model_under_a_usd_limit_is_a_clear_error(tmp_path, scripted_lm):
    server = scripted_lm([])
    done = fleet_run(tmp_path, server, "q", "--max-usd", "1",
                     env={"FLEET_ALLOW_UNPRICED_MODELS": "false"})
    assert done.returncode == 1, done.stderr
    assert "'openai/root' has no known price" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: "), done.stderr  # no frame of the view before it
    assert server.stats()["calls"] == 0


def test_missing_context_file_is_a_clear_error(tmp_path, scripted_lm):
    server = scripted_lm([])
    done = fleet_run(tmp_path, server, "q", "--context", "nope.txt")
    assert done.returncode == 1
    assert "cannot read context file nope.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert server.stats()["calls"] == 0


def test_binary_context_file_is_a_clear_error(tmp_path, scripted_lm):
    server = scripted_lm([])
    (tmp_path / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    done = fleet_run(tmp_path, server, "q", "--context", "blob.bin")
    assert done.returncode == 1
    assert "blob.bin is not UTF-8 text" in done.stderr


def test_unparseable_replies_exit_1_without_traceback(tmp_path, scripted_lm):
    server = scripted_lm([{"model": "root", "reply": "I refuse to use your format."}])
    done = fleet_run(tmp_path, server, "q")
    assert done.returncode == 1
    assert "error:" in done.stderr and "UnreadableReply" in done.stderr
    assert server.stats()["calls"] == 3
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_renderer_says_how_many_earlier_iterations_it_folds():
    renderer = TreeRenderer()
    stream = EventStream("turn", sinks=[renderer])
    root = NodeRef("rootnode0002", None, 0)
    stream.emit("rlm_started", root, model="openai/root", sub_model="openai/sub",
                signature="context, question -> answer", inputs={}, max_iterations=9)
    for i in range(1, 6):
        stream.emit("rlm_iteration", root, iteration=i, reasoning=f"step {i}", code=f"x{i} = {i}")
        stream.emit("code_output", root, iteration=i, stdout="", duration_s=0.01)
    console = Console(record=True, width=120)
    console.print(renderer.render())
    text = console.export_text()
    assert "… 2 earlier iterations" in text
    assert "x3 = 3" in text and "x5 = 5" in text and "x2 = 2" not in text


def test_renderer_draws_the_tree():
    renderer = TreeRenderer()
    stream = EventStream("turn", sinks=[renderer])
    root = NodeRef("rootnode0001", None, 0)
    child = root.child()
    stream.emit("rlm_started", root, model="openai/root", sub_model="openai/sub",
                signature="context, question -> answer", inputs={}, max_iterations=5)
    stream.emit("rlm_iteration", root, iteration=1, reasoning="look",
                code="chunks = split(context)\nfor c in chunks:\n    print(c)")
    stream.emit("lm_call", root, role="sub", model="openai/sub", prompt_tokens=10,
                completion_tokens=5, cost_usd=None, latency_s=0.1, iteration=1)
    stream.emit("code_output", root, iteration=1, stdout="first chunk\n", duration_s=0.2)
    stream.emit("rlm_started", child, model="openai/root", sub_model="openai/sub",
                signature="context, query -> answer", inputs={}, max_iterations=5)
    stream.emit("rlm_iteration", child, iteration=1, reasoning="divide", code="1 / 0")
    stream.emit("code_output", child, iteration=1, error_type="ZeroDivisionError",
                error_message="division by zero", duration_s=0.01)
    stream.emit("budget", root, usage=_usage(calls=3, tokens=400),
                remaining={"calls": 7, "tokens": 600, "usd": 1.0, "wall_s": 50.0, "depth": 1})
    stream.emit("rlm_finished", root, status="ok", answer={"answer": "done"}, iterations=1,
                usage=_usage(calls=3, tokens=400))

    console = Console(record=True, width=120)
    console.print(renderer.render())
    text = console.export_text()
    root_line = next(line for line in text.splitlines() if "rootnode0001" in line)
    assert "openai/root" in root_line and " ok " in root_line and "iter 1/5" in root_line
    assert "llm_query ×1 (15 tok)" in root_line
    assert "chunks = split(context)" in text and "first chunk" in text
    child_line = next(line for line in text.splitlines() if child.node_id in line)
    assert "running" in child_line and "depth 1" in child_line
    assert child_line.index(child.node_id) > root_line.index("rootnode0001")  # nested
    assert "ZeroDivisionError: division by zero" in text
    assert "calls 3/10" in text and "tokens 400/1,000" in text and "cost unknown" in text


def _usage(calls: int, tokens: int) -> dict:
    return {"calls": calls, "tokens": tokens, "usd_unknown_calls": calls, "elapsed_s": 1.0,
            "limits": {"max_calls": 10, "max_tokens": 1000, "max_usd": 1.0}}
