"""The chat agent on its own: the delegation policy it is given, a pause whose state survives a
JSON round trip, and what each agent shares with others — every model call answered by the
scripted server."""

from __future__ import annotations

import json

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.engine.agent import FleetAgent, InMemorySession
from fleet_rlm.engine.turn import Turn
from fleet_rlm.events import EventStream
from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_reply


def answer(text: str) -> str:
    return dspy_reply(reasoning="from the trajectory", answer=text)


@pytest.mark.parametrize(("threshold", "followed"), [(1234, True), (4321, False)])
def test_the_instructions_state_the_delegation_policy_with_the_configured_threshold(
        scripted_lm, threshold, followed):
    policy = (r"A document shorter than 1234 characters: read it directly with read_document\."
              r"\s+- A document longer than that.*delegate with rlm_query\(question, documents\)")
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("ok")},
        {"model": "root", "match": policy + ".*next_thought",
         "reply": dspy_agent_step("policy seen", "finish")},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base,
                        delegate_chars=threshold)
    result = Turn(settings, InMemorySession(settings), EventStream("t"), "hello").run()

    if followed:
        assert (result.status, result.answer) == ("ok", "ok")
        server.verify()
    else:  # the only rule wants 1234 in the instructions: a prompt saying 4321 gets no reply
        assert result.status == "error"
        assert server.stats()["unexpected"] >= 1


def test_a_paused_agent_resumes_from_its_state_after_a_json_round_trip(scripted_lm):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("Use the 2023 figures.")},
        {"model": "root", "times": 1,
         "match": r"tool_name_0 ## \]\]\nask_user.*observation_0 ## \]\]\nThe user replied: 2023",
         "reply": dspy_agent_step("clear now", "finish")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("which year?", "ask_user", question="Which year?")},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base)
    agent = FleetAgent(settings=settings)
    paused = agent(message="What were the sales?")
    assert (paused.status, paused.question, paused.answer) == ("waiting", "Which year?", None)
    (asked,) = [e for e in agent.run.stream.events if e.type == "ask_user"]
    assert asked.state == paused.pending

    pending = json.loads(json.dumps(paused.pending))  # as the store keeps it
    done = FleetAgent(settings=settings)(message="What were the sales?", resume=pending,
                                         reply="2023")
    assert (done.status, done.answer) == ("done", "Use the 2023 figures.")
    assert done.trajectory["tool_name_0"] == "ask_user"
    assert done.trajectory["tool_name_1"] == "finish"
    server.verify()


def test_agents_with_the_same_settings_share_what_react_builds_but_not_their_tools(tmp_path):
    from fleet_rlm.engine import agent as agent_module

    settings = Settings(data_dir=tmp_path, delegate_chars=777, max_agent_steps=3)
    agent_module._PROTOTYPES.pop((777, 3), None)
    first = FleetAgent(settings=settings)
    second = FleetAgent(settings=settings)
    agent_module._PROTOTYPES.pop((777, 3))
    built = FleetAgent(settings=settings)  # what dspy.ReAct builds from scratch
    for agent in (first, second):
        assert agent.react.signature.instructions == built.react.signature.instructions
        assert "777 characters" in agent.react.signature.instructions
        assert list(agent.react.signature.fields) == list(built.react.signature.fields)
        assert list(agent.extract.predict.signature.fields) == list(
            built.extract.predict.signature.fields)
        assert agent.max_iters == 3
        assert {n: t.args for n, t in agent.tools.items()} == {
            n: t.args for n, t in built.tools.items()}
        # Each agent's tools call that agent, and its predictors are its own.
        assert all(agent.tools[name].func.__self__ is agent for name in agent_module.TOOL_NAMES)
    assert second.react is not first.react and second.extract is not first.extract
    assert second.tools["memory_read"]() == second.memory_read()
    assert second.tools["finish"]() == "Completed."


def test_the_trajectory_is_formatted_as_dspy_react_formats_it(tmp_path):
    import dspy

    agent = FleetAgent(settings=Settings(data_dir=tmp_path))
    trajectory: dict = {}
    for step in range(3):
        trajectory.update({f"thought_{step}": f"thinking {step}", f"tool_name_{step}": "python",
                           f"tool_args_{step}": {"code": f"print({step})"},
                           f"observation_{step}": f"{step}\n"})
        assert agent._format_trajectory(trajectory) == dspy.ReAct._format_trajectory(
            agent, trajectory)
    assert "tool_args_2" in agent._format_trajectory(trajectory)
