"""A chat turn survives bad model replies: retried with the parse error shown, unknown tools
answered as observations, all within the turn's budget and retry bounds, and cancel stops the
retries at once — every model call answered by the scripted server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from fleet_rlm.budget import CancelToken
from fleet_rlm.config import Settings
from fleet_rlm.engine.agent import InMemorySession
from fleet_rlm.engine.turn import Turn
from fleet_rlm.events import EventStream, parse_event
from fleet_rlm.sessions import LiveTurn, SessionService
from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_reply

PROSE = "The capital of France is Paris."
RETRY_PROMPT = "Your reply could not be read"


def settings_for(server, data_dir: Path, **overrides: object) -> Settings:
    return Settings(root_model="openai/root", api_base=server.api_base, data_dir=data_dir,
                    **overrides)




async def finish(svc: SessionService, live: LiveTurn) -> tuple[list, object]:
    events = [e async for e in svc.events(live.turn_id, 0)]
    return events, await asyncio.wait_for(live.done, 30)


async def test_prose_then_an_unknown_tool_then_a_proper_step_ends_ok(scripted_lm, tmp_path,
                                                                     open_service):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER,
         "reply": dspy_reply(reasoning="from the trajectory", answer="Paris.")},
        {"model": "root", "match": r"There is no tool `web_search`; the tools are: rlm_query, ",
         "reply": dspy_agent_step("I know it", "finish"), "times": 1},
        {"model": "root", "match": RETRY_PROMPT + ".*expected the fields",
         "reply": dspy_agent_step("search the web", "web_search", query="capital of France"),
         "times": 1},
        {"model": "root", "match": "next_thought", "reply": PROSE, "times": 1},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()

    live = await svc.send(session.id, "What is the capital of France?")
    streamed, result = await finish(svc, live)

    assert (result.status, result.answer) == ("ok", "Paris."), result.error
    server.verify()
    assert server.stats()["calls"] == result.usage.calls == 4
    kinds = [(e.type, getattr(e, "tool_name", None) or getattr(e, "error_type", None))
             for e in streamed if e.type in ("agent_step", "tool_result", "error")]
    assert kinds == [("error", "UnreadableReply"), ("agent_step", "web_search"),
                     ("tool_result", "web_search"), ("agent_step", "finish"),
                     ("tool_result", "finish")]
    (retry,) = [e for e in streamed if e.type == "error"]
    assert retry.detail == ("attempt 1 of 3 could not be read; retrying with the error shown "
                            "to the model")
    (unknown,) = [e for e in streamed if e.type == "tool_result" and e.error]
    assert unknown.output.startswith("There is no tool `web_search`; the tools are: ")
    assert "".join(e.text for e in streamed if e.type == "answer_delta") == "Paris."
    turn = await svc.store.turns.get(live.turn_id)
    assert (turn.status, turn.answer, turn.error) == ("ok", "Paris.", None)
    stored = [parse_event(r.payload) for r in await svc.store.events.list(live.turn_id)]
    assert stored == streamed


async def test_an_answer_written_in_prose_is_asked_again_and_still_streams(scripted_lm, tmp_path,
                                                                         open_service):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER + ".*" + RETRY_PROMPT,
         "reply": dspy_reply(reasoning="r", answer="Paris."), "times": 1},
        {"model": "root", "match": AGENT_ANSWER, "reply": PROSE, "times": 1},
        {"model": "root", "match": "next_thought", "reply": dspy_agent_step("known", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()
    streamed, result = await finish(svc, await svc.send(session.id, "Capital of France?"))

    assert (result.status, result.answer) == ("ok", "Paris."), result.error
    server.verify()
    assert "".join(e.text for e in streamed if e.type == "answer_delta") == "Paris."
    assert [e.error_type for e in streamed if e.type == "error"] == ["UnreadableReply"]


def run_turn(server, tmp_path, cancel: CancelToken | None = None, **overrides):
    settings = Settings(root_model="openai/root", api_base=server.api_base, data_dir=tmp_path,
                        **overrides)
    stream = EventStream("t")
    turn = Turn(settings, InMemorySession(settings), stream, "hello",
                cancel=cancel or CancelToken())
    return turn.run(), stream.events


def test_a_model_that_never_answers_in_format_ends_the_turn_after_its_attempts(scripted_lm,
                                                                               tmp_path):
    server = scripted_lm([{"model": "root", "match": "next_thought", "reply": PROSE}])
    result, events = run_turn(server, tmp_path, max_step_attempts=4)

    assert result.status == "error"
    assert result.error.startswith("UnreadableReply: the model's reply to agent step 1 could "
                                   "not be read in 4 attempt(s) (FLEET_MAX_STEP_ATTEMPTS): LM "
                                   "response cannot be serialized to a JSON object. (expected "
                                   "the fields ['next_thought', 'next_tool_name', "
                                   "'next_tool_args'])")
    assert server.stats()["calls"] == result.usage.calls == 4
    details = [e.detail for e in events if e.type == "error"]
    assert details == [
        "attempt 1 of 4 could not be read; retrying with the error shown to the model",
        "attempt 2 of 4 could not be read; retrying with the error shown to the model",
        "attempt 3 of 4 could not be read; retrying through the JSON adapter",
        "the turn ended: the model's replies could not be read"]
    assert events[-1].type == "turn_finished" and events[-1].status == "error"


def test_the_last_attempt_goes_through_the_json_adapter(scripted_lm, tmp_path):
    step = {"next_thought": "known", "next_tool_name": "finish", "next_tool_args": {}}
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER,
         "reply": dspy_reply(reasoning="r", answer="Paris.")},
        {"model": "root", "match": "Respond with a JSON object", "times": 1,
         "reply": json.dumps(step)},
        {"model": "root", "match": "next_thought", "times": 2, "reply": PROSE},
    ])
    result, events = run_turn(server, tmp_path)

    assert (result.status, result.answer) == ("ok", "Paris."), result.error
    server.verify()
    assert server.stats()["calls"] == result.usage.calls == 4
    assert [e.detail for e in events if e.type == "error"] == [
        "attempt 1 of 3 could not be read; retrying with the error shown to the model",
        "attempt 2 of 3 could not be read; retrying through the JSON adapter"]


def test_the_partial_trajectory_is_kept_when_a_later_step_runs_out(scripted_lm, tmp_path):
    server = scripted_lm([
        {"model": "root", "match": "observation_0", "reply": "I refuse."},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("look", "list_documents")},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base, data_dir=tmp_path)
    from fleet_rlm.engine.agent import FleetAgent

    agent = FleetAgent(settings=settings)
    prediction = agent(message="hello")

    assert prediction.status == "error"
    assert "agent step 2" in prediction.error
    assert prediction.trajectory["tool_name_0"] == "list_documents"
    assert prediction.trajectory["observation_0"] == "(none)"


def test_retries_draw_on_the_call_limit(scripted_lm, tmp_path):
    server = scripted_lm([{"model": "root", "match": "next_thought", "reply": PROSE}])
    result, _ = run_turn(server, tmp_path, max_lm_calls=2)

    assert result.status == "budget"
    assert "calls" in result.error
    assert server.stats()["calls"] == result.usage.calls == 2


def test_retries_are_bounded_per_turn(scripted_lm, tmp_path):
    server = scripted_lm([
        {"model": "root", "match": RETRY_PROMPT + ".*observation_0", "reply": "unused"},
        {"model": "root", "match": "observation_0", "reply": PROSE},
        {"model": "root", "match": RETRY_PROMPT, "times": 1,
         "reply": dspy_agent_step("look", "list_documents")},
        {"model": "root", "match": "next_thought", "reply": PROSE, "times": 1},
    ])
    result, events = run_turn(server, tmp_path, max_turn_retries=1)

    assert result.status == "error"
    assert "agent step 2 could not be read after 1 attempt(s), with this turn's retries spent " \
           "(FLEET_MAX_TURN_RETRIES)" in result.error
    assert server.stats()["calls"] == result.usage.calls == 3


def test_the_turns_retries_count_across_an_ask_user_pause(scripted_lm, tmp_path):
    server = scripted_lm([
        {"model": "root", "match": "The user replied", "reply": PROSE},
        {"model": "root", "match": RETRY_PROMPT, "times": 1,
         "reply": dspy_agent_step("which?", "ask_user", question="Which one?")},
        {"model": "root", "match": "next_thought", "reply": PROSE, "times": 1},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base, data_dir=tmp_path,
                        max_turn_retries=1)
    session = InMemorySession(settings)
    paused = Turn(settings, session, EventStream("t"), "hello").run()
    assert (paused.status, paused.pending["retries"]) == ("waiting", 1)

    resumed = Turn(settings, session, EventStream("t", start_seq=99), "hello").run(
        resume=paused.pending, reply="the first")

    assert resumed.status == "error"
    assert "with this turn's retries spent" in resumed.error
    assert server.stats()["calls"] == 3


def test_cancel_stops_the_retries_at_once(scripted_lm, tmp_path):
    server = scripted_lm([{"model": "root", "match": "next_thought", "reply": PROSE,
                           "delay_ms": 400}])
    cancel = CancelToken()
    timer = threading.Timer(0.6, cancel.cancel)  # during the first retry
    timer.start()
    started = time.monotonic()
    try:
        result, events = run_turn(server, tmp_path, cancel=cancel, max_step_attempts=10)
    finally:
        timer.cancel()

    assert result.status == "cancelled"
    assert time.monotonic() - started < 1.5
    assert server.stats()["calls"] == 2
    assert [e.type for e in events][-2:] == ["cancelled", "turn_finished"]
