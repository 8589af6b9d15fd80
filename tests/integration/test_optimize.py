"""The optimisation loop end to end with the scripted model, the reflection model's replies
included: feedback -> dataset -> GEPA under one budget -> a version with a better validation
score -> promote -> the next turn's prompt carries it -> roll back. Plus the budget stopping a
run, and a version of another release refused."""

from __future__ import annotations

import asyncio
import re

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.optimize.datasets import DatasetError, Example
from fleet_rlm.optimize.run import NothingValidated, optimise
from fleet_rlm.sessions import LOCAL
from fleet_rlm.sessions.programs import Incompatible
from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_json_reply, dspy_reply

CAPITALS = [("France", "PARIS"), ("Italy", "ROME"), ("Spain", "MADRID"), ("Japan", "TOKYO"),
            ("Peru", "LIMA"), ("Egypt", "CAIRO")]
RULE = "Answer with the city's name in UPPERCASE letters only."


def question(country: str) -> str:
    return f"What is the capital of {country}?"


def toy_rules() -> list[dict]:
    """The reflection model always proposes RULE; the agent's answer step answers in capitals
    when its instructions carry RULE, in title case otherwise."""
    rules: list[dict] = [{"model": "reflect", "reply": dspy_json_reply(new_instruction=RULE)}]
    for country, city in CAPITALS:
        asked = rf"(?=.*capital of {country}\?)(?=.*{AGENT_ANSWER})"
        rules.append({"model": "root", "match": rf"^(?=.*{re.escape(RULE)}){asked}",
                      "reply": dspy_reply(reasoning="as instructed", answer=city)})
        rules.append({"model": "root", "match": rf"^{asked}",
                      "reply": dspy_reply(reasoning="known", answer=city.title())})
    rules.append({"model": "root", "match": "next_thought",
                  "reply": dspy_agent_step("I know this", "finish")})
    return rules


def settings_for(server, tmp_path, **extra) -> Settings:
    return Settings(root_model="openai/root", api_base=server.api_base, data_dir=tmp_path,
                    **extra)


async def ask(svc, text: str):
    session = await svc.create_session("capitals")
    posted = await svc.post(LOCAL, session.id, text)
    result = await posted.done
    await svc.stored(session.id, complete=True)
    return posted.turn_id, result


def extract_prompts(server) -> list[str]:
    return [r["text"] for r in server.requests() if re.search(AGENT_ANSWER, r["text"])]


async def test_feedback_to_a_promoted_version_that_the_next_turn_runs_and_back(
        scripted_lm, tmp_path, open_service):
    # The reflection model has a bad moment first: a 503, then a reply cut at the limit.
    server = scripted_lm([{"model": "reflect", "status": 503, "times": 1},
                          {"model": "reflect", "reply": '{"new_instr', "finish_reason": "length",
                           "times": 1}, *toy_rules()])
    svc = await open_service(settings_for(server, tmp_path))
    door = svc.programs

    # Feedback: each answer was in the wrong case; the person corrected it.
    for country, city in CAPITALS:
        turn_id, result = await ask(svc, question(country))
        assert result.answer == city.title()
        await svc.add_feedback(LOCAL, turn_id, False, comment="capitals only, please",
                               corrected_answer=city)
    dataset = await door.create_dataset("local", "capitals", feedback=True)
    assert dataset.source == "feedback" and len(dataset.examples) == 6
    _, examples = await door.dataset("local", "capitals")
    assert {(e.question, e.answer, e.comment) for e in examples} == {
        (question(c), city, "capitals only, please") for c, city in CAPITALS}

    # GEPA, the reflection model on the same budget.
    server.reset()
    outcome = await asyncio.to_thread(
        optimise, svc.settings, "agent", "capitals", examples, metric_name="exact",
        max_metric_calls=24, reflection_model="openai/reflect", max_calls=200)
    assert (outcome.score_before, outcome.score_after, outcome.stopped) == (0.0, 1.0, None)
    assert outcome.instructions["extract.predict"] == RULE
    assert f"+{RULE}" in outcome.detail["prompt_diff"]
    stats = server.stats()
    assert stats["rule_uses"][:2] == [1, 1]  # both bad replies met, and retried
    assert stats["models"]["reflect"] >= 3 and stats["unexpected"] == 0
    assert outcome.detail["usage"]["calls"] == server.stats()["calls"]  # every call metered
    version = await door.save("local", outcome)
    assert (version.target, version.number) == ("agent", 1)

    # Nothing runs it until it is promoted.
    await door.promote("local", "agent:1", by="test")
    server.reset()
    turn_id, result = await ask(svc, question("Peru"))
    assert result.answer == "LIMA"
    [prompt] = extract_prompts(server)
    assert RULE in prompt  # the request the model received carries the promoted instructions
    turn = await svc.turn(LOCAL, turn_id)
    assert turn.programs == {"agent": version.id}
    [started] = [e for e in await svc.turn_events(LOCAL, turn_id)
                 if e["type"] == "turn_started"]
    assert started["programs"] == {"agent": version.id}
    markdown = await svc.export_turn(LOCAL, turn_id, "markdown")
    assert f"Program versions: agent `{version.id}`" in markdown

    # Roll back: the baseline runs again.
    await door.rollback("local", "agent", by="test")
    server.reset()
    turn_id, result = await ask(svc, question("Peru"))
    assert result.answer == "Lima"
    [prompt] = extract_prompts(server)
    assert RULE not in prompt
    assert (await svc.turn(LOCAL, turn_id)).programs == {}
    assert server.stats()["unexpected"] == 0


def examples_of_capitals() -> list[Example]:
    return [Example(question=question(c), answer=city) for c, city in CAPITALS]


async def test_the_budget_stops_a_run_with_the_best_so_far_and_the_promotion_stands(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm(toy_rules())
    svc = await open_service(settings_for(server, tmp_path))
    door = svc.programs
    full = await asyncio.to_thread(
        optimise, svc.settings, "agent", "capitals", examples_of_capitals(),
        metric_name="exact", max_metric_calls=24, reflection_model="openai/reflect")
    promoted = await door.save("local", full)
    await door.promote("local", "agent:1", by="test")

    # 3 validation examples of 2 calls each, then a minibatch: the reflection call is refused.
    server.reset()
    stopped = await asyncio.to_thread(
        optimise, svc.settings, "agent", "capitals", examples_of_capitals(),
        metric_name="exact", max_metric_calls=24, reflection_model="openai/reflect",
        max_calls=12)
    assert stopped.stopped is not None and "calls" in stopped.stopped
    assert (stopped.score_before, stopped.score_after) == (0.0, 0.0)
    assert server.stats()["calls"] == 12 and "reflect" not in server.stats()["models"]
    assert stopped.instructions == stopped.baseline  # the best so far: the baseline
    version = await door.save("local", stopped)
    assert version.stopped == stopped.stopped
    assert (await door.promoted_versions("local"))["agent"].id == promoted.id

    with pytest.raises(NothingValidated, match="before the baseline was validated"):
        optimise(svc.settings, "agent", "capitals", examples_of_capitals(),
                 metric_name="exact", max_metric_calls=24, max_calls=3)


async def test_bad_input_is_refused_before_any_model_call(scripted_lm, tmp_path, open_service):
    server = scripted_lm([])
    svc = await open_service(settings_for(server, tmp_path))
    door = svc.programs
    with pytest.raises(DatasetError, match="'none' has 0 example"):
        await door.create_dataset("local", "none", feedback=True)
    with pytest.raises(DatasetError, match="unknown metric 'fuzzy'"):
        optimise(svc.settings, "agent", "x", examples_of_capitals(), metric_name="fuzzy")
    with pytest.raises(DatasetError, match="'x' has 2 example"):
        optimise(svc.settings, "agent", "x", examples_of_capitals()[:2], metric_name="exact")
    with pytest.raises(ValueError, match="unknown target 'planner'"):
        optimise(svc.settings, "planner", "x", examples_of_capitals(), metric_name="exact")
    assert server.stats()["calls"] == 0

    old = await svc.store.programs.add(
        "local", "agent", dataset="x", metric="exact", release="0123456789abcdef",
        baseline={}, instructions={"react": "old"}, score_before=0.0, score_after=1.0,
        stopped=None, detail={})
    with pytest.raises(Incompatible, match="optimised on program release 0123456789abcdef"):
        await door.promote("local", f"agent:{old.number}", by="test")
    assert await door.promoted_versions("local") == {}


def test_the_trace_of_a_turn_names_the_versions_it_ran():
    from fleet_rlm.budget import Budget, Limits
    from fleet_rlm.events import EventStream, NodeRef
    from fleet_rlm.tracing import build_tree

    stream = EventStream("t1")
    stream.emit("turn_started", NodeRef.root(), question="q", programs={"agent": "v1"})
    stream.emit("turn_finished", NodeRef.root(), status="ok", answer="a",
                usage=Budget(Limits()).snapshot())
    assert build_tree(stream.events).attributes["fleet.programs"] == {"agent": "v1"}


def test_a_stopped_run_resumes_from_its_log_dir(scripted_lm, tmp_path):
    server = scripted_lm(toy_rules())
    settings = settings_for(server, tmp_path)
    log_dir = tmp_path / "gepa"
    run = {"metric_name": "exact", "max_metric_calls": 24, "reflection_model": "openai/reflect",
           "log_dir": log_dir}
    stopped = optimise(settings, "agent", "capitals", examples_of_capitals(), max_calls=12,
                       **run)
    assert stopped.stopped is not None and (log_dir / "gepa_state.bin").is_file()
    resumed = optimise(settings, "agent", "capitals", examples_of_capitals(), **run)
    assert (resumed.stopped, resumed.score_after) == (None, 1.0)
    assert resumed.instructions["extract.predict"] == RULE


async def test_jsonl_examples_read_the_tenants_documents_by_id(scripted_lm, tmp_path,
                                                               open_service):
    import json

    svc = await open_service(settings_for(scripted_lm([]), tmp_path))
    session = await svc.create_session("docs")
    document = await svc.add_document(session.id, "facts.txt", b"Lima is in Peru.")
    rows = [{"question": f"q{i}", "document_ids": [document.id], "answer": "Lima"}
            for i in range(4)]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = await svc.programs.create_dataset("local", "docs", jsonl=good)
    assert {e["context"] for e in dataset.examples} == {"Lima is in Peru."}

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps({**r, "document_ids": ["nope"]}) for r in rows))
    with pytest.raises(DatasetError, match="no document nope in this tenant's sessions"):
        await svc.programs.create_dataset("local", "bad", jsonl=bad)
