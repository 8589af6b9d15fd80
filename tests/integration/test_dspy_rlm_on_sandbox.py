"""dspy's own dspy.RLM runs on our sandbox through the CodeInterpreter adapter."""

from __future__ import annotations

import dspy

from fleet_rlm.config import Settings
from fleet_rlm.sandbox import interpreter_factory
from fleet_rlm.testing import dspy_reply


def test_stock_rlm_runs_a_three_iteration_program_on_our_interpreter(scripted_lm):
    step = r"\[\[ ## iteration ## \]\]\n{}/"
    server = scripted_lm([
        {"model": "root", "match": step.format(1), "times": 1,
         "reply": dspy_reply(reasoning="Look at the data.",
                             code="words = context.split()\nprint(len(words))")},
        {"model": "root", "match": step.format(2), "times": 1,
         "reply": dspy_reply(reasoning="Ask the sub-model.",
                             code="colour = llm_query('Which colour? ' + words[-1])\n"
                                  "print(colour)")},
        {"model": "root", "match": step.format(3), "times": 1,
         "reply": dspy_reply(reasoning="Done.",
                             code="SUBMIT(answer=colour.strip().upper() + '-' + str(len(words)))")},
        {"model": "sub", "match": "Which colour\\? needle", "times": 1, "reply": "blue"},
    ])
    lm = dspy.LM("openai/root", api_base=server.api_base, api_key="test", cache=False)
    sub_lm = dspy.LM("openai/sub", api_base=server.api_base, api_key="test", cache=False)
    factory = interpreter_factory(Settings())
    rlm = dspy.RLM("context, question -> answer", max_iters=5, sub_lm=sub_lm,
                   interpreter_factory=factory)

    with dspy.context(lm=lm):
        result = rlm(context="hay " * 500 + "needle", question="What colour is the needle?")

    assert result.answer == "BLUE-501"
    outputs = [step["output"] for step in result.trajectory]
    assert outputs[0].strip() == "501"
    assert outputs[1].strip() == "blue"
    stats = server.stats()
    assert stats["calls"] == 4 and stats["unexpected"] == 0
    assert stats["rule_uses"] == [1, 1, 1, 1]


def test_runtime_and_syntax_errors_reach_the_model_with_line_numbers(scripted_lm):
    step = r"\[\[ ## iteration ## \]\]\n{}/"
    server = scripted_lm([
        {"model": "root", "match": step.format(1), "times": 1,
         "reply": dspy_reply(reasoning="Oops.", code="x = 1\ny = x / 0")},
        {"model": "root", "match": step.format(2), "times": 1,
         "reply": dspy_reply(reasoning="Oops again.", code="def f(:\n    pass")},
        {"model": "root", "match": step.format(3), "times": 1,
         "reply": dspy_reply(reasoning="Fine.", code="SUBMIT(answer='ok')")},
    ])
    lm = dspy.LM("openai/root", api_base=server.api_base, api_key="test", cache=False)
    rlm = dspy.RLM("context -> answer", max_iters=4,
                   interpreter_factory=interpreter_factory(Settings()))
    with dspy.context(lm=lm):
        result = rlm(context="anything")

    runtime, syntax = result.trajectory[0]["output"], result.trajectory[1]["output"]
    assert "ZeroDivisionError" in runtime and "line 2" in runtime
    assert "SyntaxError" in syntax and "line 1" in syntax
    assert result.answer == "ok"


def test_llm_query_uses_the_lm_of_dspy_context_when_there_is_no_sub_lm(scripted_lm):
    # With no sub_lm, dspy's llm_query asks dspy.settings.lm; the tool runs in a host thread of
    # the sandbox, which must see the caller's `dspy.context(lm=...)`.
    step = r"\[\[ ## iteration ## \]\]\n{}/"
    server = scripted_lm([
        {"model": "root", "match": step.format(1), "times": 1,
         "reply": dspy_reply(reasoning="Ask.", code="said = llm_query('Say hi to ' + name)")},
        {"model": "root", "match": step.format(2), "times": 1,
         "reply": dspy_reply(reasoning="Done.", code="SUBMIT(answer=said)")},
        {"model": "root", "match": "^Say hi to Ada$", "times": 1, "reply": "hi Ada"},
    ])
    lm = dspy.LM("openai/root", api_base=server.api_base, api_key="test", cache=False)
    rlm = dspy.RLM("name -> answer", max_iters=3,
                   interpreter_factory=interpreter_factory(Settings()))
    with dspy.context(lm=lm):
        result = rlm(name="Ada")
    assert result.answer == "hi Ada"
    assert server.stats()["unexpected"] == 0
