"""How the chat agent reads realistic model replies: each shape of a first step, played by the
scripted server, with what must come of it.

    step   the reply is read as a step calling `tool` (in ChatAdapter's format or not); its
           tool result is an error observation or not, as `error` says; no retry
    retry  the reply cannot be read: the step is asked again with the parse error shown, and
           the model's second reply (a proper `finish`) carries the turn on

Every turn then finishes and answers "done": a bad reply never ends the turn by itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.engine.agent import InMemorySession
from fleet_rlm.engine.turn import Turn
from fleet_rlm.events import EventStream
from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_reply

RETRY_PROMPT = "Your reply could not be read"
FINISH = dspy_agent_step("That is all I need.", "finish")


def fields(*pairs: tuple[str, str]) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in pairs) + "\n\n[[ ## completed ## ]]"


THOUGHT = ("next_thought", "I should look at the documents.")
TOOL = ("next_tool_name", "list_documents")
ARGS = ("next_tool_args", "{}")
READ = {"name": "a.txt"}


def step(tool: str, says: str | None = None) -> dict[str, Any]:
    """Read as a step calling `tool`; `says`: its observation is an error saying this."""
    return {"outcome": "step", "tool": tool, "says": says}


RETRY = {"outcome": "retry"}

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat format": (fields(THOUGHT, TOOL, ARGS), step("list_documents")),
    "fields out of order": (fields(ARGS, TOOL, THOUGHT), step("list_documents")),
    "no completed marker": (fields(THOUGHT, TOOL, ARGS).rsplit("\n\n", 1)[0],
                            step("list_documents")),
    "no thought": (fields(TOOL, ARGS), step("list_documents")),
    "an extra field": (fields(THOUGHT, ("confidence", "high"), TOOL, ARGS),
                       step("list_documents")),
    "a preamble before the fields": ("Sure, here is my next step.\n\n"
                                     + fields(THOUGHT, TOOL, ARGS), step("list_documents")),
    "two steps in one reply": (fields(THOUGHT, TOOL, ARGS) + "\n"
                               + fields(THOUGHT, ("next_tool_name", "memory_read"), ARGS),
                               step("list_documents")),
    "header names capitalised": (fields(THOUGHT, TOOL, ARGS).replace("next_", "Next_"),
                                 step("list_documents")),
    "headers without spaces": (fields(THOUGHT, TOOL, ARGS).replace("[[ ## ", "[[##")
                               .replace(" ## ]]", "##]]"), step("list_documents")),
    "JSON instead of fields": (json.dumps({"next_thought": "look", "next_tool_name":
                                           "read_document", "next_tool_args": READ}),
                               step("read_document")),
    "JSON in a fence with prose": ("Here is my step:\n```json\n" + json.dumps(
        {"next_thought": "look", "next_tool_name": "list_documents", "next_tool_args": {}})
        + "\n```", step("list_documents")),
    "markdown headings": ("## next_thought\nLook first.\n\n## next_tool_name\nlist_documents\n\n"
                          "## next_tool_args\n{}", step("list_documents")),
    "bold labels": ("**Next thought:** Look first.\n**Next tool name:** list_documents\n"
                    "**Next tool args:** {}", step("list_documents")),
    "plain labels": ("next_thought: Look first.\nnext_tool_name: read_document\n"
                     'next_tool_args: {"name": "a.txt"}', step("read_document")),
    "XML tags": ("<next_thought>Look.</next_thought>\n<next_tool_name>list_documents"
                 "</next_tool_name>\n<next_tool_args>{}</next_tool_args>",
                 step("list_documents")),
    "the whole reply in a fence": ("```\n" + fields(THOUGHT, TOOL, ARGS) + "\n```",
                                   step("list_documents")),
    "tool name in backticks": (fields(THOUGHT, ("next_tool_name", "`list_documents`"), ARGS),
                               step("list_documents")),
    "tool name called": (fields(THOUGHT, ("next_tool_name", "list_documents()"), ARGS),
                         step("list_documents")),
    "tool name quoted": (fields(THOUGHT, ("next_tool_name", '"list_documents"'), ARGS),
                         step("list_documents")),
    "unicode thought": (fields(("next_thought", "先看文档。🙂"), TOOL, ARGS),
                        step("list_documents")),
    "a very long thought": (fields(("next_thought", "hmm " * 3000), TOOL, ARGS),
                            step("list_documents")),
    "args as a Python dict": (fields(THOUGHT, ("next_tool_name", "read_document"),
                                     ("next_tool_args", "{'name': 'a.txt'}")),
                              step("read_document")),
    "finish with an answer argument": (dspy_agent_step("done", "finish", answer="Paris"),
                                       step("finish")),
    "an unknown tool": (dspy_agent_step("search", "web_search", query="x"),
                        step("web_search", "There is no tool `web_search`; the tools are: "
                                           "rlm_query, list_documents, ")),
    "a tool name in the wrong case": (dspy_agent_step("look", "List_Documents"),
                                      step("List_Documents", "There is no tool `List_Documents`")),
    "an unknown argument": (dspy_agent_step("read", "read_document", file="a.txt"),
                            step("read_document", "`read_document` has no argument `file`; its "
                                                  "arguments are: name: string, start: integer")),
    "a missing argument": (dspy_agent_step("read", "read_document"),
                           step("read_document", "`read_document` needs `name`")),
    "a mistyped argument": (dspy_agent_step("read", "read_document", name="a.txt",
                                            start="the beginning"),
                            step("read_document", "Arg start is invalid: 'the beginning' is "
                                                  "not of type 'integer'")),
    "a tool that raises": (dspy_agent_step("read", "read_document", name="missing.txt"),
                           step("read_document", "Execution error in read_document: KeyError: "
                                                 "\"no document named 'missing.txt'")),
    "a prose answer": ("The capital of France is Paris.", RETRY),
    "a refusal": ("I'm sorry, but I can't help with that request.", RETRY),
    "an empty reply": ("", RETRY),
    "only a thought": (fields(THOUGHT), RETRY),
    "cut off before the args": (fields(THOUGHT, TOOL).rsplit("\n\n", 1)[0]
                                + "\n\n[[ ## next_tool_", RETRY),
    "args as a call": (fields(THOUGHT, ("next_tool_name", "read_document"),
                              ("next_tool_args", 'read_document("a.txt")')), RETRY),
    "args as a list": (fields(THOUGHT, ("next_tool_name", "read_document"),
                              ("next_tool_args", '["a.txt"]')), RETRY),
    "a native tool call as JSON": (json.dumps({"name": "list_documents", "arguments": {}}),
                                   RETRY),
}


@pytest.mark.parametrize("shape", list(CASES))
def test_the_agent_reads_or_recovers_from_a_reply_shape(scripted_lm, shape):
    reply, expected = CASES[shape]
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": dspy_reply(reasoning="r", answer="done")},
        {"model": "root", "match": RETRY_PROMPT, "reply": FINISH},
        {"model": "root", "match": "observation_0", "reply": FINISH},
        {"model": "root", "match": "next_thought", "reply": reply, "times": 1},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base)
    session = InMemorySession(settings)
    session.add_document("a.txt", "alpha beta gamma")
    stream = EventStream("t")

    result = Turn(settings, session, stream, "What is in my documents?").run()

    assert (result.status, result.answer) == ("ok", "done"), result.error
    server.verify()
    steps = [e for e in stream.events if e.type == "agent_step"]
    results = [e for e in stream.events if e.type == "tool_result"]
    retries = [e for e in stream.events if e.type == "error"]
    if expected["outcome"] == "step":
        assert steps[0].tool_name == expected["tool"]
        assert results[0].error is (expected["says"] is not None), results[0].output
        assert expected["says"] is None or expected["says"] in results[0].output
        assert not retries
        calls = 2 if expected["tool"] == "finish" else 3
    else:
        assert [s.tool_name for s in steps] == ["finish"]
        (retry,) = retries
        assert retry.error_type == "UnreadableReply" and "retrying" in retry.detail
        calls = 3
    assert server.stats()["calls"] == result.usage.calls == calls


def test_the_corpus_holds_at_least_30_shapes():
    assert len(CASES) >= 30
