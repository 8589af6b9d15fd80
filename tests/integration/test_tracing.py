"""MLflow tracing on a local store: a scripted 2-level RLM run and an agent turn through the
session service each become one trace whose span tree follows the event stream."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet_rlm import RecursiveRLM, tracing
from fleet_rlm.config import Settings
from fleet_rlm.sessions import SessionService
from fleet_rlm.testing import (
    AGENT_ANSWER,
    ask_then_delegate_rules,
    dspy_agent_step,
    dspy_reply,
    two_level_rlm_rules,
)
from fleet_rlm.tracing import FEEDBACK_NAME, log_feedback, trace_events

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow

PRICES = {"openai/root": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
          "openai/sub": {"input_per_mtok": 0.5, "output_per_mtok": 1.0}}


# A root RLM splits the context over three child RLMs; each asks the sub-model once.
TREE_RULES = two_level_rlm_rules()


@pytest.fixture(autouse=True)
def _mlflow_uri_restored():
    """MLflow exports its tracking URI as MLFLOW_TRACKING_URI, which Settings (and every
    subprocess) would read in later tests."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(before)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    # One store for the module: creating MLflow's schema takes seconds.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def settings_for(server, tracking_uri: str, **extra) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    mlflow_tracking_uri=tracking_uri, prices=PRICES, **extra)


def read_trace(tracking_uri: str, trace_id: str):
    return mlflow.MlflowClient(tracking_uri).get_trace(trace_id, flush=True)


class Tree:
    """A trace's spans by name and parent, for assertions."""

    def __init__(self, trace) -> None:
        self.spans = trace.data.spans
        self.by_id = {s.span_id: s for s in self.spans}

    def parent(self, span):
        return self.by_id.get(span.parent_id)

    def named(self, prefix: str) -> list:
        return [s for s in self.spans if s.name.startswith(prefix)]

    def children(self, span) -> list:
        return [s for s in self.spans if s.parent_id == span.span_id]

    def root(self):
        (root,) = [s for s in self.spans if s.parent_id is None]
        return root


def test_a_two_level_rlm_run_is_one_trace(scripted_lm, tracking_uri):
    server = scripted_lm(TREE_RULES)
    settings = settings_for(server, tracking_uri)
    out = RecursiveRLM(settings=settings, max_iterations=3)(context="x" * 30, question="q")
    assert out.status == "ok", out.error
    trace_id = trace_events(settings, out.events, name="fleet run", inputs={"question": "q"},
                            tags={"fleet.kind": "run"})

    trace = read_trace(tracking_uri, trace_id)
    assert trace.info.state == "OK" and trace.info.tags["fleet.kind"] == "run"
    tree = Tree(trace)
    root = tree.root()
    assert root.name == "fleet run" and root.inputs == {"question": "q"}
    assert root.outputs == {"answer": "chunk-summary | chunk-summary | chunk-summary"}

    rlms = tree.named("rlm ")
    (top,) = [s for s in rlms if s.attributes["fleet.depth"] == 0]
    children = [s for s in rlms if s.attributes["fleet.depth"] == 1]
    assert tree.parent(top) is root and len(children) == 3
    assert [s.name for s in tree.children(top)] == ["iteration 1", "iteration 2"]
    first = tree.children(top)[0]
    (cell,) = [s for s in tree.children(first) if s.name == "code"]
    assert "rlm_query_batched" in cell.inputs["code"]
    assert "chunk-summary" in cell.outputs["stdout"]
    for child in children:  # each child RLM hangs under the code cell that started it
        assert tree.parent(child) is cell
        assert child.attributes["fleet.parent_id"] == top.attributes["fleet.node_id"]
        assert child.outputs == {"answer": "chunk-summary"}
        (iteration,) = tree.children(child)
        (child_cell,) = [s for s in tree.children(iteration) if s.name == "code"]
        assert [s.name for s in tree.children(child_cell)] == ["lm sub"]
        assert "lm root" in [s.name for s in tree.children(iteration)]

    lms = tree.named("lm ")
    assert len(lms) == out.usage.calls == 8
    for lm in lms:
        parent = tree.parent(lm)
        role = lm.attributes["fleet.role"]
        iteration = lm.attributes["fleet.iteration"]
        assert parent.name == ("code" if role == "sub" else f"iteration {iteration}")
        tokens = lm.attributes["fleet.prompt_tokens"], lm.attributes["fleet.completion_tokens"]
        assert tokens[0] > 0 and tokens[1] > 0
        price = PRICES[f"openai/{role}"]
        cost = (tokens[0] * price["input_per_mtok"] + tokens[1] * price["output_per_mtok"]) / 1e6
        assert lm.attributes["fleet.cost_usd"] == pytest.approx(cost)
        assert lm.attributes["mlflow.llm.cost"] == {"total_cost": pytest.approx(cost)}
        assert lm.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == sum(tokens)
        assert lm.start_time_ns >= parent.start_time_ns and lm.end_time_ns <= parent.end_time_ns
    assert trace.info.token_usage["total_tokens"] == out.usage.tokens

    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("fleet-rlm")
    found = mlflow.MlflowClient(tracking_uri).search_traces([experiment.experiment_id])
    assert trace_id in [t.info.trace_id for t in found]
    # Trace data goes next to the store, never into the working directory.
    assert experiment.artifact_location.endswith("/mlartifacts")


# The RLM the agent delegates to counts in one cell.
COUNT_NEEDLES = {"match": "variables_info", "model": "root", "reply": dspy_reply(
    reasoning="count", code="print(len(context))\nSUBMIT(answer=str(context.count('needle')))")}


async def test_an_agent_turn_is_one_trace_with_its_id_stored(scripted_lm, tracking_uri, tmp_path):
    server = scripted_lm([COUNT_NEEDLES,
                          *ask_then_delegate_rules("How many needles?", "500 needles, x=42.")])
    service = SessionService(settings_for(server, tracking_uri, data_dir=tmp_path,
                                          delegate_chars=1000))
    await service.open()
    try:
        session = await service.create_session("needles")
        await service.add_document(session.id, "big.txt", ("hay needle " * 500).encode())
        live = await service.send(session.id, "how many needles?")
        assert (await live.done).status == "waiting"
        assert (await service.store.turns.get(live.turn_id)).trace_id is None  # not over yet
        live = await service.reply(live.turn_id, "big.txt")
        assert (await live.done).answer == "500 needles, x=42."
        turn = await service.store.turns.get(live.turn_id)
    finally:
        await service.close()

    assert turn.trace_id
    trace = read_trace(tracking_uri, turn.trace_id)
    assert trace.info.tags["fleet.turn_id"] == turn.id
    assert trace.info.tags["fleet.session_id"] == session.id
    tree = Tree(trace)
    root = tree.root()
    assert root.name == "turn" and root.inputs == {"question": "how many needles?"}
    assert root.outputs == {"answer": "500 needles, x=42."}
    steps = [s for s in tree.children(root) if s.name.startswith("step")]
    assert [s.name for s in steps] == ["step 1: ask_user", "step 2: rlm_query", "step 3: python",
                                       "step 4: finish"]
    # The question to the user and its answer (given after the pause) are one step.
    assert [(e.name, e.attributes) for e in steps[0].events] == [
        ("ask_user", {"question": "Which document?"})]
    assert steps[0].outputs == {"output": "big.txt"}
    assert steps[2].inputs["tool_args"] == {"code": "x = 42\nprint(x)"}
    assert steps[2].outputs == {"output": "42\n"}
    for step in steps:  # the LM call that chose each step sits inside it
        assert "lm agent" in [s.name for s in tree.children(step)]
    (rlm,) = tree.named("rlm ")
    assert tree.parent(rlm) is steps[1] and rlm.attributes["fleet.depth"] == 1
    (iteration,) = tree.children(rlm)
    assert sorted(s.name for s in tree.children(iteration)) == ["code", "lm root"]
    (cell,) = tree.named("code")
    assert cell.outputs["stdout"] == "5500\n"
    # The final answer's LM call belongs to the turn itself.
    assert [s.name for s in tree.children(root) if s.name.startswith("lm")] == ["lm agent"]
    assert len(tree.named("lm ")) == turn.usage["calls"]  # both sides of the pause


async def test_an_unreachable_tracking_store_never_fails_the_turn(scripted_lm, tmp_path):
    server = scripted_lm([
        COUNT_NEEDLES,
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="r", answer="500 needles, x=42.")},
        {"match": "next_thought", "model": "root", "reply": dspy_agent_step("done", "finish")}])
    settings = settings_for(server, "nonsense://store", data_dir=tmp_path)
    service = SessionService(settings)
    await service.open()
    try:
        session = await service.create_session("t")
        live = await service.send(session.id, "hello")
        result = await live.done
        turn = await service.store.turns.get(live.turn_id)
    finally:
        await service.close()
    assert result.status == "ok" and turn.status == "ok" and turn.trace_id is None


def test_a_tracking_store_that_never_answers_does_not_stall_the_run(monkeypatch, tmp_path):
    released = threading.Event()
    monkeypatch.setattr(tracing, "trace_events", lambda *a, **k: released.wait(10) and "late")
    monkeypatch.setattr(tracing, "TRACE_WAIT_S", 0.2)
    settings = Settings(mlflow_tracking_uri="sqlite:///unused.db", data_dir=tmp_path)
    started = time.monotonic()
    assert tracing.record_trace(settings, []) is None
    assert time.monotonic() - started < 2
    released.set()
    assert tracing.record_trace(settings.model_copy(update={"mlflow_tracking_uri": None}),
                                []) is None  # not configured: nothing is written


def test_feedback_is_an_assessment_on_the_trace(scripted_lm, tracking_uri):
    server = scripted_lm(TREE_RULES)
    settings = settings_for(server, tracking_uri)
    out = RecursiveRLM(settings=settings, max_iterations=3)(context="x" * 30, question="q")
    trace_id = trace_events(settings, out.events, wait=True)
    up = log_feedback(settings, trace_id, True, "exactly right", user="ana")
    down = log_feedback(settings, trace_id, False)
    feedback = {a.assessment_id: a for a in read_trace(tracking_uri, trace_id).info.assessments}
    assert feedback[up].name == FEEDBACK_NAME and feedback[up].value is True
    assert feedback[up].rationale == "exactly right"
    assert feedback[up].source.source_type == "HUMAN" and feedback[up].source.source_id == "ana"
    assert feedback[down].value is False and feedback[down].rationale is None


def test_fleet_run_records_a_trace(scripted_lm, tracking_uri, tmp_path):
    server = scripted_lm(TREE_RULES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "MLFLOW_"))}
    env["FLEET_ALLOW_UNPRICED_MODELS"] = "true"  # the scripted models have no price
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), FLEET_ROOT_MODEL="openai/root",
               FLEET_SUB_MODEL="openai/sub", FLEET_API_KEY="test", MLFLOW_TRACKING_URI=tracking_uri)
    (tmp_path / "ctx.txt").write_text("x" * 30)
    done = subprocess.run(
        [sys.executable, "-m", "fleet_rlm.cli", "run", "q", "-c", "ctx.txt", "-q",
         "--api-base", server.api_base],
        cwd=tmp_path, env=env, text=True, capture_output=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "chunk-summary | chunk-summary | chunk-summary\n"
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("MLflow trace: ")]
    trace = read_trace(tracking_uri, line.removeprefix("MLflow trace: "))
    assert Tree(trace).root().name == "fleet run" and len(Tree(trace).named("rlm ")) == 4
    assert not (tmp_path / "mlruns").exists()


def test_a_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    settings = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db", data_dir=tmp_path)
    with pytest.raises(ImportError, match=r"pip install 'fleet-rlm\[mlflow\]'"):
        trace_events(settings, [])


async def test_the_service_reports_a_missing_extra_when_it_opens(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    service = SessionService(Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db",
                                      data_dir=tmp_path))
    with pytest.raises(ImportError, match=r"fleet-rlm\[mlflow\]"):
        await service.open()
    await service.store.close()


def test_the_tracking_uri_reads_mlflows_own_variable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a.db")
    assert Settings().mlflow_tracking_uri == "sqlite:///a.db"
    monkeypatch.setenv("FLEET_MLFLOW_TRACKING_URI", "sqlite:///b.db")
    assert Settings().mlflow_tracking_uri == "sqlite:///b.db"
