import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleet_rlm.budget import Budget, Limits
from fleet_rlm.events import (
    EVENT_TYPES,
    CodeOutputEvent,
    EventStream,
    LmCallEvent,
    NodeRef,
    event_json_schema,
    parse_event,
)

KINDS = {
    "artifact",
    "turn_started",
    "agent_step",
    "tool_result",
    "rlm_started",
    "rlm_iteration",
    "code_output",
    "lm_call",
    "budget",
    "rlm_finished",
    "ask_user",
    "answer_delta",
    "turn_finished",
    "error",
    "cancelled",
}


def _usage():
    budget = Budget(
        Limits(max_calls=10, max_depth=2), prices={"m": {"input_per_mtok": 1, "output_per_mtok": 2}}
    )
    budget.commit(budget.reserve("m", 5), 120, 30)
    return budget.snapshot(), budget.remaining(depth=1)


USAGE, REMAINING = _usage()

SAMPLES = {
    "turn_started": {"question": "How many needles?\n€ ✓"},
    "agent_step": {
        "thought": "delegate",
        "tool_name": "rlm",
        "tool_args": {"doc": "d1", "n": 3, "nested": {"xs": [1, 2.5, None, True]}},
    },
    "tool_result": {"tool_name": "rlm", "output": "42", "error": True},
    "rlm_started": {
        "model": "openai/gpt-4o-mini",
        "sub_model": "openai/gpt-4o-mini",
        "signature": "context, question -> answer",
        "inputs": {"context": {"type": "str", "chars": 1_000_000}},
        "max_iterations": 20,
    },
    "rlm_iteration": {"iteration": 3, "reasoning": "r", "code": "print(1)", "phase": "extract"},
    "code_output": {
        "iteration": 3,
        "stdout": "1\n",
        "stderr": "warn",
        "error_type": "KeyError",
        "error_message": "'x'",
        "traceback": 'File "<cell>", line 2',
        "duration_s": 0.25,
        "timed_out": True,
        "state_lost": True,
    },
    "lm_call": {
        "role": "sub",
        "model": "m",
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cost_usd": None,
        "latency_s": 1.5,
        "iteration": 2,
        "prompt_preview": "p",
        "response_preview": "r",
        "error": "RateLimitError",
    },
    "budget": {"usage": USAGE, "remaining": REMAINING},
    "rlm_finished": {
        "status": "extract",
        "answer": {"answer": "7", "sources": ["a", "b"]},
        "iterations": 20,
        "usage": USAGE,
    },
    "ask_user": {"question": "Which file?", "request_id": "req-1"},
    "answer_delta": {"text": "The ans"},
    "turn_finished": {"status": "budget", "answer": None, "usage": USAGE},
    "error": {"error_type": "SandboxDied", "message": "gone", "detail": "Traceback ..."},
    "cancelled": {"partial_answer": {"answer": "partial"}, "reason": "user"},
    "artifact": {"path": "artifacts/plot.png", "size_bytes": 68, "media_type": "image/png"},
}


def test_samples_cover_every_kind():
    assert set(SAMPLES) == set(EVENT_TYPES) == KINDS


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_through_json(kind):
    stream = EventStream("turn-1")
    event = stream.emit(kind, NodeRef.root().child(), **SAMPLES[kind])
    assert event.type == kind
    assert parse_event(event.model_dump_json()) == event
    assert parse_event(json.loads(event.model_dump_json())) == event
    assert parse_event(event.model_dump_json().encode()) == event


def test_emit_accepts_the_event_class_and_fills_the_envelope():
    root = NodeRef.root()
    child = root.child()
    assert (child.parent_id, child.depth) == (root.node_id, 1)
    assert root.parent_id is None and len(root.node_id) == 12 and root.node_id != child.node_id
    stream = EventStream("t")
    event = stream.emit(LmCallEvent, child, **SAMPLES["lm_call"])
    assert isinstance(event, LmCallEvent)
    assert (event.turn_id, event.node_id, event.parent_id, event.depth, event.seq) == (
        "t",
        child.node_id,
        root.node_id,
        1,
        1,
    )
    assert event.ts > 1.6e9
    assert stream.events == [event]


def test_emit_rejects_unknown_fields_and_wrong_types():
    stream = EventStream("t")
    with pytest.raises(ValidationError):
        stream.emit("answer_delta", NodeRef.root(), text="x", colour="red")
    with pytest.raises(ValidationError):
        stream.emit("lm_call", NodeRef.root(), **{**SAMPLES["lm_call"], "role": "boss"})
    assert stream.events == []  # a rejected event consumes no seq
    assert stream.emit("answer_delta", NodeRef.root(), text="x").seq == 1


def test_unknown_type_is_rejected_with_the_expected_tags():
    with pytest.raises(ValidationError) as info:
        parse_event({"type": "telepathy", "turn_id": "t"})
    message = str(info.value)
    assert "'telepathy'" in message and "does not match any of the expected tags" in message
    assert "'lm_call'" in message
    with pytest.raises(ValidationError, match="Unable to extract tag using discriminator"):
        parse_event('{"turn_id": "t"}')


@settings(max_examples=50, deadline=None)
@given(
    stdout=st.text(),
    duration=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    error_message=st.none() | st.text(),
)
def test_code_output_round_trips_arbitrary_text(stdout, duration, error_message):
    event = EventStream("t").emit(
        CodeOutputEvent,
        NodeRef.root(),
        iteration=1,
        stdout=stdout,
        duration_s=duration,
        error_message=error_message,
    )
    assert parse_event(event.model_dump_json()) == event


def run_concurrently(worker, n_threads):
    """Run worker(i) in n threads at once; re-raise the first failure in the test thread."""
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return [f.result() for f in [pool.submit(worker, i) for i in range(n_threads)]]


@pytest.fixture
def eager_thread_switching():
    """Switch threads constantly, so a missing lock shows up as a failure."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("eager_thread_switching")
def test_seq_strictly_increasing_in_delivery_order_across_threads():
    n_threads, per_thread = 16, 200
    received: list[tuple[int, int, int]] = []  # (seq, thread, index)

    def record(event):
        thread, index = map(int, event.text.split())
        received.append((event.seq, thread, index))

    stream = EventStream("t", sinks=[record])
    start = threading.Barrier(n_threads, timeout=30)

    def worker(t):
        node = NodeRef.root()
        start.wait()
        for i in range(per_thread):
            stream.emit("answer_delta", node, text=f"{t} {i}")

    run_concurrently(worker, n_threads)

    total = n_threads * per_thread
    assert [seq for seq, _, _ in received] == list(range(1, total + 1))
    assert [e.seq for e in stream.events] == list(range(1, total + 1))
    assert all(a.ts <= b.ts for a, b in zip(stream.events, stream.events[1:], strict=False))
    for t in range(n_threads):  # each thread's own events keep their order
        assert [i for _, th, i in received if th == t] == list(range(per_thread))


def test_failing_sink_is_logged_and_does_not_stop_others(caplog):
    seen = []

    def broken(event):
        raise RuntimeError("sink down")

    stream = EventStream("t", sinks=[broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="fleet_rlm.events"):
        first = stream.emit("answer_delta", NodeRef.root(), text="a")
        second = stream.emit("answer_delta", NodeRef.root(), text="b")
    assert seen == [first, second]
    assert "sink down" in caplog.text and "answer_delta #2" in caplog.text


def test_subscribe_and_unsubscribe():
    stream = EventStream("t")
    seen = []
    stream.emit("answer_delta", NodeRef.root(), text="before")
    unsubscribe = stream.subscribe(seen.append)
    stream.emit("answer_delta", NodeRef.root(), text="during")
    unsubscribe()
    stream.emit("answer_delta", NodeRef.root(), text="after")
    assert [e.text for e in seen] == ["during"]

    def once(event):  # a sink may unsubscribe itself without deadlocking
        seen.append(event)
        stop()

    stop = stream.subscribe(once)
    stream.emit("answer_delta", NodeRef.root(), text="x")
    stream.emit("answer_delta", NodeRef.root(), text="y")
    assert [e.text for e in seen] == ["during", "x"]


def test_json_schema_has_all_kinds_with_required_type():
    schema = event_json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == KINDS
    assert schema["discriminator"]["propertyName"] == "type"
    defs = schema["$defs"]
    for kind, ref in mapping.items():
        definition = defs[ref.rsplit("/", 1)[-1]]
        assert definition["properties"]["type"]["const"] == kind
        assert {"type", "turn_id", "node_id", "parent_id", "depth", "seq", "ts"} <= set(
            definition["required"]
        )
    assert "usd_unknown_calls" in defs["Usage"]["required"]
    json.dumps(schema)  # serialisable as is for the TypeScript generator
