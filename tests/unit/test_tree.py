"""The one fold from events to a tree, on the fixtures the web app's reducer is checked against
too (frontend/src/tree/fixtures.test.ts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet_rlm.events import parse_event
from fleet_rlm.tree import EventTree, fold, snapshot

FIXTURES = Path(__file__).parents[1] / "data" / "event_trees"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_there_are_fixtures() -> None:
    assert {"agent_turn", "run_with_errors", "budget_stop", "cancelled_run",
            "agent_turn_shuffled", "agent_turn_gap"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_the_fold_gives_the_fixtures_tree(name: str) -> None:
    case = load(name)
    assert snapshot(fold(parse_event(e) for e in case["events"])) == case["tree"]


@pytest.mark.parametrize("name", CASES)
def test_event_by_event_is_the_same_as_all_at_once(name: str) -> None:
    tree = EventTree()
    for event in load(name)["events"]:
        tree.apply(parse_event(event))
    assert snapshot(tree) == load(name)["tree"]


@pytest.mark.parametrize("name", ["agent_turn", "run_with_errors"])
def test_order_and_duplicates_do_not_change_the_tree(name: str) -> None:
    assert load(f"{name}_shuffled")["tree"] == load(name)["tree"]


def test_a_child_nests_under_the_cell_that_started_it() -> None:
    tree = fold(parse_event(e) for e in load("agent_turn")["events"])
    rlm = tree.node("rlm1")
    assert [c.children for c in rlm.cells] == [[], ["rlm2"]]
    assert [c.seq for c in rlm.cells[1].sub_calls] == [15, 16]
    assert tree.node("agent1").steps[0].children == ["rlm1"]
    assert tree.subtree_totals("rlm1").calls == 5
    assert [type(item).__name__ for item in tree.top()] == ["Step", "Step", "Step", "Step"]
    plot = tree.node("agent1").steps[1]
    assert [a.path for a in plot.artifacts] == ["artifacts/plot.png", "artifacts/counts.csv"]


def test_errors_land_on_the_cell_that_was_running() -> None:
    tree = fold(parse_event(e) for e in load("run_with_errors")["events"])
    kid = tree.node("kidb")
    assert [e.error_type for e in kid.cells[0].errors] == ["MaxDepth"]
    # A retried call: both attempts on the cell, only the one sent counted.
    first, second = kid.cells[0].sub_calls
    assert (first.attempt, first.counted, second.attempt) == (1, False, 2)
    assert second.error == "RateLimitError: slow down" and second.http_status == 429
    assert kid.own.calls == len([e for c in kid.cells for e in c.calls]) + 1
    assert tree.node("kida").cells[0].output.error_type == "ZeroDivisionError"
    assert tree.outcome is not None and tree.outcome.status == "extract"
    assert [c.phase for c in tree.node("top").cells] == ["action", "extract"]
    assert not tree.node("top").cells[1].has_code


def test_an_unreadable_reply_lands_on_the_iteration_being_written() -> None:
    from fleet_rlm.events import EventStream, NodeRef

    stream = EventStream("t")
    node = NodeRef("top", None, 0)
    stream.emit("rlm_started", node, model="m", sub_model="m", signature="q -> a", inputs={},
                max_iterations=3)
    for iteration in (1, 2):
        stream.emit("lm_call", node, role="root", model="m", prompt_tokens=1,
                    completion_tokens=1, cost_usd=None, latency_s=0.1, iteration=iteration)
        if iteration == 2:
            stream.emit("error", node, error_type="UnreadableReply", message="iteration 2: ...",
                        detail="attempt 1 of 3 could not be read; retrying")
            stream.emit("lm_call", node, role="root", model="m", prompt_tokens=1,
                        completion_tokens=1, cost_usd=None, latency_s=0.1, iteration=2)
        stream.emit("rlm_iteration", node, iteration=iteration, reasoning="r", code="x = 1")
        stream.emit("code_output", node, iteration=iteration, duration_s=0.1)

    first, second = fold(stream.events).node("top").cells
    assert (first.errors, [e.error_type for e in second.errors]) == ([], ["UnreadableReply"])
    assert len(second.calls) == 2


def test_a_budget_stop_settles_the_nodes_still_running() -> None:
    tree = fold(parse_event(e) for e in load("budget_stop")["events"])
    assert tree.status == "budget"
    assert {n.status for n in tree.nodes.values()} == {"budget"}
    assert tree.outcome is not None and tree.outcome.status == "budget"


def test_a_turn_id_filter_ignores_other_turns() -> None:
    events = [parse_event(e) for e in load("cancelled_run")["events"]]
    assert EventTree.of(events, turn_id="another").nodes == {}


def test_every_event_kind_has_a_place_in_the_fold() -> None:
    from fleet_rlm.events import EVENT_TYPES

    missing = [kind for kind in EVENT_TYPES if not hasattr(EventTree, f"_on_{kind}")]
    assert missing == [], f"tree.py has no _on_<kind> handler for {missing} (ARCHITECTURE.md: " \
                          "adding an event kind)"


def test_the_export_and_the_trace_draw_a_stream_joined_late() -> None:
    from fleet_rlm.export import turn_markdown
    from fleet_rlm.tracing import build_tree

    events = load("agent_turn_gap")["events"]
    turn = {"index": 1, "status": "ok", "id": "t1", "session_id": "s1", "created_at": "then",
            "finished_at": None, "trace_id": None, "user_message": "q", "events": events,
            "question": None, "answer": "500 needles.", "error": None, "usage": None}
    text = "\n".join(turn_markdown(turn))
    assert "### Tool rlm_query" in text and "RLM `rlm2`" in text
    root = build_tree(parse_event(e) for e in events)
    assert [s.name for s in root.children if s.kind != "lm"] == [
        "rlm rlm2", "rlm rlm1", "tool rlm_query", "step 1: python", "step 2: finish"]
    assert all(s.end is not None and s.start <= s.end for s in root.walk())


def test_the_terminal_tree_and_the_export_name_the_files_a_step_wrote():
    from io import StringIO

    from rich.console import Console

    from fleet_rlm.cli.render import TreeRenderer
    from fleet_rlm.export import turn_markdown

    events = load("agent_turn")["events"]
    console = Console(file=StringIO(), width=200)
    renderer = TreeRenderer(console)
    for event in events:
        renderer(parse_event(event))
    console.print(renderer.render())
    drawn = console.file.getvalue()
    assert "wrote artifacts/plot.png (68 bytes)" in drawn
    assert "wrote artifacts/counts.csv (20 bytes)" in drawn
    turn = {"index": 1, "status": "ok", "id": "t1", "session_id": "s1", "created_at": "then",
            "finished_at": None, "trace_id": None, "user_message": "q", "events": events,
            "question": None, "answer": "500 needles.", "error": None, "usage": None}
    text = "\n".join(turn_markdown(turn))
    assert "Files written:" in text
    assert "- `artifacts/plot.png` (image/png, 68 bytes)" in text
