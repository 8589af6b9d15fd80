"""Writes the shared event-tree fixtures: event streams and the tree `fleet_rlm.tree.snapshot`
gives for each. pytest (tests/unit/test_tree.py) and vitest (frontend/src/tree/fixtures.test.ts)
both fold every stream and compare with the tree stored here.

Run it after changing a stream below or adding an event kind, then read the diff of the JSON: the
trees are what both folds must give, so check them by eye before committing.

    uv run python tests/data/event_trees/make_fixtures.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from fleet_rlm.events import parse_event
from fleet_rlm.tree import fold, snapshot

HERE = Path(__file__).parent
TURN = "turn1"
LIMITS = {"max_calls": 200, "max_tokens": 2_000_000, "max_usd": 5.0, "max_wall_s": 1800.0,
          "max_depth": 2}
AGENT = ("agent0", None, 0)
AGENT2 = ("agent1", None, 0)
RLM = ("rlm1", "agent1", 1)
CHILD = ("rlm2", "rlm1", 2)
TOP = ("top", None, 0)
KID_A = ("kida", "top", 1)
KID_B = ("kidb", "top", 1)


def usage(calls: int, tokens: int, usd: float = 0.0) -> dict[str, Any]:
    return {"calls": calls, "prompt_tokens": tokens, "completion_tokens": 0, "tokens": tokens,
            "usd": usd, "usd_unknown_calls": 0, "elapsed_s": float(calls), "limits": LIMITS,
            "by_model": {}}


def lm(role: str, iteration: int | None, tokens: int, cost: float | None = 0.001,
       error: str | None = None, **attempt: Any) -> dict[str, Any]:
    model = "openai/sub" if role == "sub" else "openai/root"
    return {"type": "lm_call", "role": role, "model": model,
            "prompt_tokens": tokens, "completion_tokens": 10, "cost_usd": cost, "latency_s": 0.5,
            "iteration": iteration, "prompt_preview": f"prompt {role} {iteration}",
            "response_preview": f"response {role} {iteration}", "error": error, **attempt}


def started(signature: str = "context, query -> answer", iteration: int | None = None,
            chars: int = 100) -> dict[str, Any]:
    return {"type": "rlm_started", "model": "openai/root", "sub_model": "openai/sub",
            "signature": signature, "inputs": {"context": {"type": "str", "chars": chars}},
            "max_iterations": 20, "iteration": iteration}


def action(n: int, code: str, reasoning: str = "think") -> dict[str, Any]:
    return {"type": "rlm_iteration", "iteration": n, "reasoning": reasoning, "code": code,
            "phase": "action"}


def output(n: int, stdout: str = "", error: tuple[str, str] | None = None) -> dict[str, Any]:
    return {"type": "code_output", "iteration": n, "stdout": stdout, "stderr": "",
            "error_type": error[0] if error else None,
            "error_message": error[1] if error else None,
            "traceback": f"Traceback: {error[0]}: {error[1]}" if error else None,
            "duration_s": 0.25, "timed_out": False, "state_lost": False}


def finished(status: str, answer: dict | None, iterations: int, calls: int) -> dict[str, Any]:
    return {"type": "rlm_finished", "status": status, "answer": answer,
            "iterations": iterations, "usage": usage(calls, calls * 100)}


def budget(calls: int) -> dict[str, Any]:
    return {"type": "budget", "usage": usage(calls, calls * 100),
            "remaining": {"calls": 200 - calls, "tokens": 1000, "usd": 4.5, "wall_s": 1700.0,
                          "depth": 1}}


def stream(bodies: list[tuple[tuple, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for i, ((node, parent, depth), body) in enumerate(bodies):
        event = {"turn_id": TURN, "node_id": node, "parent_id": parent, "depth": depth,
                 "seq": i + 1, "ts": 1000.0 + i, **body}
        out.append(parse_event(event).model_dump(mode="json"))
    return out


def agent_turn() -> list[dict[str, Any]]:
    """A chat turn: an ask_user pause resumed on a new agent node, a delegated RLM whose second
    cell calls llm_query twice and starts a child RLM, a python step that writes two artifacts,
    then the streamed answer."""
    return stream([
        (AGENT, {"type": "turn_started", "question": "How many needles?"}),
        (AGENT, lm("agent", 1, 100)),
        (AGENT, {"type": "agent_step", "thought": "ask", "tool_name": "ask_user",
                 "tool_args": {"question": "Which?"}}),
        (AGENT, {"type": "ask_user", "question": "Which document?", "request_id": "r1",
                 "state": {}}),
        (AGENT, {"type": "turn_finished", "status": "waiting", "answer": None,
                 "usage": usage(1, 110)}),
        (AGENT2, {"type": "tool_result", "tool_name": "ask_user", "output": "big.txt",
                  "error": False}),
        (AGENT2, lm("agent", 2, 120)),
        (AGENT2, {"type": "agent_step", "thought": "delegate", "tool_name": "rlm_query",
                  "tool_args": {"question": "count"}}),
        (RLM, started("context, question -> answer", chars=5500)),
        (RLM, lm("root", 1, 200)),
        (RLM, action(1, "print(len(context))", "look")),
        (RLM, output(1, "5500\n")),
        (RLM, lm("root", 2, 300)),
        (RLM, action(2, "llm_query(a); llm_query(b); rlm_query(c)", "split")),
        (RLM, lm("sub", 2, 50, None)),
        (RLM, lm("sub", 2, 60, None)),
        (CHILD, started(iteration=2)),
        (CHILD, lm("root", 1, 40)),
        (CHILD, action(1, "SUBMIT(answer='3')", "r")),
        (CHILD, output(1)),
        (CHILD, finished("ok", {"answer": "3"}, 1, 7)),
        (RLM, output(2, "ok\n")),
        (RLM, budget(8)),
        (RLM, finished("ok", {"answer": "500"}, 2, 8)),
        (AGENT2, {"type": "tool_result", "tool_name": "rlm_query", "output": "500",
                  "error": False}),
        (AGENT2, lm("agent", 3, 130)),
        (AGENT2, {"type": "agent_step", "thought": "plot", "tool_name": "python",
                  "tool_args": {"code": "plot()"}}),
        (AGENT2, {"type": "artifact", "path": "artifacts/plot.png", "size_bytes": 68,
                  "media_type": "image/png"}),
        (AGENT2, {"type": "artifact", "path": "artifacts/counts.csv", "size_bytes": 20,
                  "media_type": "text/csv"}),
        (AGENT2, {"type": "tool_result", "tool_name": "python", "output": "(no output)",
                  "error": False}),
        (AGENT2, lm("agent", 3, 150)),
        (AGENT2, {"type": "agent_step", "thought": "done", "tool_name": "finish",
                  "tool_args": {}}),
        (AGENT2, {"type": "tool_result", "tool_name": "finish", "output": "", "error": False}),
        (AGENT2, lm("agent", None, 90)),
        (AGENT2, {"type": "answer_delta", "text": "500 "}),
        (AGENT2, {"type": "answer_delta", "text": "needles."}),
        (AGENT2, {"type": "turn_finished", "status": "ok", "answer": "500 needles.",
                  "usage": usage(10, 1500, 0.005)}),
    ])


def run_with_errors() -> list[dict[str, Any]]:
    """`fleet run`: a top RLM whose first cell starts two children with rlm_query_batched (each
    naming the cell); one child's code fails, one sub call errs, a depth refusal is reported as
    an error event, and the top node ends in the extract fallback."""
    return stream([
        (TOP, started("context, question -> answer", chars=9000)),
        (TOP, lm("root", 1, 100)),
        (TOP, action(1, "rlm_query_batched(['a', 'b'], parts)")),
        (KID_A, started(iteration=1)),
        (KID_B, started(iteration=1)),
        (KID_A, lm("root", 1, 30)),
        (KID_B, lm("root", 1, 31)),
        (KID_A, action(1, "1 / 0")),
        (KID_B, action(1, "print(llm_query('x'))")),
        (KID_A, output(1, error=("ZeroDivisionError", "division by zero"))),
        # A retried call: the first attempt never reached the provider (not counted).
        (KID_B, lm("sub", 1, 0, None, error="LMTransportError: connection refused",
                   counted=False, retry_in_s=0.01)),
        (KID_B, lm("sub", 1, 5, error="RateLimitError: slow down", attempt=2,
                   http_status=429)),
        (KID_B, {"type": "error", "error_type": "MaxDepth",
                 "message": "rlm_query at depth 2 exceeds max depth 1", "detail": None}),
        (KID_B, output(1, "[ERROR] RateLimitError\n")),
        (KID_A, lm("root", 2, 32)),
        (KID_A, action(2, "SUBMIT(answer='a')")),
        (KID_A, output(2)),
        (KID_A, finished("ok", {"answer": "a"}, 2, 6)),
        (KID_B, lm("root", 2, 33)),
        (KID_B, action(2, "SUBMIT(answer='b')")),
        (KID_B, output(2)),
        (KID_B, finished("ok", {"answer": "b"}, 2, 8)),
        (TOP, output(1, "['a', 'b']\n")),
        (TOP, budget(8)),
        (TOP, lm("extract", 2, 400)),
        (TOP, {"type": "rlm_iteration", "iteration": 2, "phase": "extract", "code": "",
               "reasoning": "Max iterations reached: extracting the answer from the trajectory."}),
        (TOP, finished("extract", {"answer": "a and b"}, 1, 9)),
    ])


def budget_stop() -> list[dict[str, Any]]:
    """A chat turn stopped by the budget while its delegated RLM's child still ran: the child
    never reports its end, the turn's status settles it."""
    agent, rlm, child = ("agent0", None, 0), ("r1", "agent0", 1), ("r2", "r1", 2)
    return stream([
        (agent, {"type": "turn_started", "question": "Summarise everything"}),
        (agent, lm("agent", 1, 100)),
        (agent, {"type": "agent_step", "thought": "big", "tool_name": "rlm_query",
                 "tool_args": {"question": "summarise"}}),
        (rlm, started()),
        (rlm, lm("root", 1, 1000)),
        (rlm, action(1, "print(rlm_query('part', context))")),
        (child, started(iteration=1)),
        (child, lm("root", 1, 1000)),
        (rlm, budget(3)),
        (rlm, finished("budget", None, 1, 3)),
        (agent, {"type": "tool_result", "tool_name": "rlm_query",
                 "output": "BudgetExceeded: tokens 2,100 > 2,000", "error": True}),
        (agent, {"type": "turn_finished", "status": "budget", "answer": None,
                 "usage": usage(3, 2100)}),
    ])


def cancelled_run() -> list[dict[str, Any]]:
    """A `fleet run` cancelled mid-cell: the cancelled event settles every running node."""
    return stream([
        (TOP, started()),
        (TOP, lm("root", 1, 100)),
        (TOP, action(1, "print(rlm_query('q', context))")),
        (KID_A, started(iteration=1)),
        (KID_A, lm("root", 1, 50)),
        (TOP, {"type": "cancelled", "partial_answer": None, "reason": "user"}),
        (TOP, finished("cancelled", None, 1, 2)),
    ])


def shuffled(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The stream out of order, with a tenth of it delivered twice."""
    rng = random.Random(seed)
    out = events + rng.sample(events, max(len(events) // 10, 1))
    rng.shuffle(out)
    return out


def with_gap(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream joined late: everything before the child RLM's first call is missing, so the
    child has no parent in the tree and its cell is known only from its call."""
    return events[17:]


CASES = {
    "agent_turn": ("A chat turn with a pause, delegation and a nested child.", agent_turn()),
    "run_with_errors": ("fleet run: batched children, errors, extract.", run_with_errors()),
    "budget_stop": ("A turn stopped by the budget with a child still running.", budget_stop()),
    "cancelled_run": ("A run cancelled with a child running.", cancelled_run()),
    "agent_turn_shuffled": ("agent_turn out of order with duplicates: the same tree.",
                            shuffled(agent_turn(), 7)),
    "run_with_errors_shuffled": ("run_with_errors out of order with duplicates.",
                                 shuffled(run_with_errors(), 11)),
    "agent_turn_gap": ("agent_turn joined late: an orphan child, a tool result with no step.",
                       with_gap(agent_turn())),
}


def main() -> None:
    for name, (description, events) in CASES.items():
        tree = snapshot(fold(parse_event(e) for e in events))
        data = {"description": description, "events": events, "tree": tree}
        (HERE / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"{name}.json: {len(events)} events, {len(tree['nodes'])} nodes")


if __name__ == "__main__":
    main()
