"""Ready-made scripts for the scripted LM server: rule lists several tests play.

Rules are tried in order and the first one that matches answers, so each list puts the more
specific prompts first; a test adds its own rules around them.
"""

from __future__ import annotations

import re
from typing import Any

from fleet_rlm.testing.dspy_replies import dspy_agent_step, dspy_reply

# Only the agent's final-answer (extract) prompt asks for this field.
AGENT_ANSWER = r"then `\[\[ ## answer ## \]\]`"


def two_level_rlm_rules(*, sub_reply: str | dict[str, str] = "chunk-summary",
                        root_model: str = "root", sub_model: str = "sub",
                        delay_ms: int = 0) -> list[dict[str, Any]]:
    """A root RLM that fans out to three child RLMs, each of which asks the sub-model once.

    Root iteration 1 splits the first 30 characters of `context` into three chunks of 10 and
    runs `rlm_query_batched(['summarise'] * 3, chunks)`, printing the list of answers; each child
    SUBMITs `llm_query('sum: ' + context)` in its first iteration; root iteration 2 SUBMITs the
    answers joined by ' | '. Eight model calls: 2 root iterations, 3 child iterations, 3 sub.

    `sub_reply` is the sub-model's reply to every chunk, or a reply per chunk keyed by the
    chunk's text (each used once). `delay_ms` is added to every call.
    """
    def rule(model: str, match: str, reply: str, times: int | None) -> dict[str, Any]:
        return {"model": model, "match": match, "reply": reply, "times": times,
                "delay_ms": delay_ms}

    # Root iteration 2 comes first: its prompt holds 'summarise' (its first cell's code), as
    # each child's holds `iteration 1/`.
    rules = [
        rule(root_model, r"iteration ## \]\]\n2/",
             dspy_reply(reasoning="join the summaries", code="SUBMIT(answer=' | '.join(res))"),
             times=1),
        rule(root_model, "summarise",
             dspy_reply(reasoning="ask the sub-model",
                        code="SUBMIT(answer=llm_query('sum: ' + context))"),
             times=3),
        rule(root_model, r"iteration ## \]\]\n1/",
             dspy_reply(reasoning="split in three",
                        code="chunks = [context[i:i+10] for i in range(0, 30, 10)]\n"
                             "res = rlm_query_batched(['summarise'] * 3, chunks)\n"
                             "print(res)"),
             times=1),
    ]
    if isinstance(sub_reply, str):
        return [*rules, rule(sub_model, "sum: ", sub_reply, times=None)]
    return rules + [rule(sub_model, "sum: " + re.escape(chunk), reply, times=1)
                    for chunk, reply in sub_reply.items()]


def ask_then_delegate_rules(question: str, answer: str, *,
                            model: str = "root") -> list[dict[str, Any]]:
    """An agent turn of four steps that pauses once for the user.

    Step 1 asks the user "Which document?" (the turn waits); after the reply, step 2 delegates
    `question` with rlm_query, step 3 runs `x = 42; print(x)` in python, step 4 finishes, and
    the final answer is `answer`. The delegated RLM's own rules are not here: put them first
    (for instance `two_level_rlm_rules()`).
    """
    def step(match: str, reply: str, **rule: Any) -> dict[str, Any]:
        return {"model": model, "match": match, "reply": reply, **rule}

    return [
        step(AGENT_ANSWER, dspy_reply(reasoning="r", answer=answer)),
        step("observation_2", dspy_agent_step("done", "finish")),
        step("observation_1", dspy_agent_step("keep a number", "python", code="x = 42\nprint(x)")),
        step("observation_0", dspy_agent_step("delegate", "rlm_query", question=question)),
        step("next_thought", dspy_agent_step("which one?", "ask_user", question="Which document?"),
             times=1),
    ]
