"""dspy's interpreter contract, on our sandbox.

Equivalents of dspy's own tests for `dspy.RLM` and `dspy.PythonInterpreter` (tests/predict/
test_rlm.py and tests/primitives/test_python_interpreter.py in stanfordnlp/dspy) that apply to a
CodeInterpreter, plus what dspy's interpreter does that the tests take for granted: the values
of inputs and tool results, fresh inputs every iteration, host callbacks in the caller's dspy
context, and a clear error for a tool that calls back into its own interpreter.

Every program's expected result is recorded here, derived from dspy's interpreter's rules
(dspy/primitives/python_interpreter.py: inputs are assigned afresh before every cell; sets reach
the code as sorted lists, tuples as lists, pydantic models as their dicts, dicts keep their int
keys; tool results are JSON-ified, a pydantic model or dataclass as its dict). Where dspy's own
interpreter can run (`uv run --group bench`, which brings Deno), the same programs run on it too
and must give the same results; without Deno those comparisons are skipped.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Literal

import dspy
import pytest
from dspy.primitives.prediction import Prediction
from dspy.primitives.sandbox_serializable import SandboxSerializable
from dspy.utils.callback import BaseCallback
from pydantic import BaseModel

from fleet_rlm.config import Settings
from fleet_rlm.sandbox import SandboxInterpreter, create_sandbox, interpreter_factory

ROOT = Path(__file__).resolve().parents[2]


class Item(BaseModel):
    name: str
    qty: int


class Payload(BaseModel):
    value: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


def scripted(codes: list[str]):
    """A stand-in for RLM.generate_action that writes the given code, one cell per call."""

    class Scripted:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, **kwargs: Any) -> Prediction:
            code = codes[min(self.calls, len(codes) - 1)]
            self.calls += 1
            return Prediction(reasoning=f"step {self.calls}", code=code)

        async def acall(self, **kwargs: Any) -> Prediction:
            return self(**kwargs)

    return Scripted()


def ours() -> Any:
    return interpreter_factory(Settings())


@pytest.fixture(scope="module")
def stock() -> Any:
    """dspy's own PythonInterpreter factory, or a skip where Deno is not installed."""
    spec = importlib.util.spec_from_file_location("fleet_bench_stock",
                                                  ROOT / "benchmarks" / "_stock.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    try:
        return module.stock_factory()
    except module.StockUnavailable as exc:
        pytest.skip(f"dspy's own interpreter is not available here: {exc}")


def lookup(name: str) -> Item:
    """Look an item up."""
    return Item(name=name, qty=len(name))


def locate(name: str) -> Point:
    """Where an item is."""
    return Point(x=len(name), y=2)


class TypedInputs(dspy.Signature):
    """Answer from typed inputs."""

    tags: set[str] = dspy.InputField()
    items: list[Item] = dspy.InputField()
    table: dict[int, str] = dspy.InputField()
    point: tuple[int, int] = dspy.InputField()
    answer: str = dspy.OutputField()
    total: int = dspy.OutputField()


INPUTS = {"tags": {"b", "c", "a"}, "items": [Item(name="apple", qty=2), Item(name="fig", qty=3)],
          "table": {1: "one", 2: "two"}, "point": (3, 4)}

# (name, signature, tools, cells, expected outputs): programs that run the same on dspy's
# interpreter and ours, with the results dspy's rules give.
PROGRAMS = [
    ("set input", TypedInputs, [],
     ["SUBMIT(answer=','.join(sorted(tags)) + str('b' in tags), total=len(tags))"],
     {"answer": "a,b,cTrue", "total": 3}),
    ("pydantic inputs", TypedInputs, [],
     ["SUBMIT(answer=items[1]['name'], total=sum(i['qty'] for i in items))"],
     {"answer": "fig", "total": 5}),
    ("integer keys", TypedInputs, [],
     ["SUBMIT(answer=table[2] + str(sorted(table)), total=sum(table))"],
     {"answer": "two[1, 2]", "total": 3}),
    ("tuple input", TypedInputs, [],
     ["SUBMIT(answer=str(list(point)), total=point[0] * point[1])"],
     {"answer": "[3, 4]", "total": 12}),
    ("tool returning a pydantic model", TypedInputs, [lookup],
     ["found = lookup('pear')\nprint(found['name'])",
      "SUBMIT(answer=found['name'], total=found['qty'] + lookup(name='kiwi')['qty'])"],
     {"answer": "pear", "total": 8}),
    ("tool returning a dataclass", TypedInputs, [locate],
     ["where = locate('plum')\nSUBMIT(answer=str(sorted(where.items())), total=where['x'])"],
     {"answer": "[('x', 4), ('y', 2)]", "total": 4}),
    ("inputs are set again every iteration", TypedInputs, [],
     ["tags = None\nitems.clear()\ntable[3] = 'three'",
      "SUBMIT(answer=str(len(table)) + str(len(items)), total=len(tags))"],
     {"answer": "22", "total": 3}),
]


def run_program(factory: Any, signature: Any, tools: list, cells: list[str]) -> Prediction:
    rlm = dspy.RLM(signature, max_iters=len(cells) + 1, tools=tools, interpreter_factory=factory)
    rlm.generate_action = scripted(cells)
    return rlm(**INPUTS)


def outputs(result: Prediction, expected: dict) -> dict:
    return {name: getattr(result, name) for name in expected}


@pytest.mark.parametrize(("name", "signature", "tools", "cells", "expected"), PROGRAMS,
                         ids=[p[0] for p in PROGRAMS])
def test_programs_give_dspys_results_on_our_interpreter(name, signature, tools, cells, expected):
    result = run_program(ours(), signature, tools, cells)
    assert outputs(result, expected) == expected, result.trajectory


@pytest.mark.slow
@pytest.mark.parametrize(("name", "signature", "tools", "cells", "expected"), PROGRAMS,
                         ids=[p[0] for p in PROGRAMS])
def test_programs_give_the_same_results_on_dspys_interpreter(stock, name, signature, tools,
                                                             cells, expected):
    result = run_program(stock, signature, tools, cells)
    assert outputs(result, expected) == expected, result.trajectory


def test_values_keep_their_python_type_in_the_sandbox() -> None:
    # Beyond dspy's interpreter (which turns sets and tuples into lists): whatever the sandbox's
    # standard library can hold arrives as itself; models and dataclasses as records.
    interpreter = ours()()
    values = {"tags": {"b", "a"}, "frozen": frozenset({1}), "point": (1, (2, 3)),
              "blob": b"\x00\xff", "day": datetime.date(2024, 2, 29),
              "when": datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.UTC),
              "table": {1: "one", (2, 3): "pair", None: "none"},
              "item": Item(name="apple", qty=2), "spot": Point(1, 2),
              "odd": {"$t": "not a tag", "k": [1]}}
    try:
        shown = interpreter.execute(
            "for v in (tags, frozen, point, blob, day, when, table, item, spot, odd):\n"
            "    print(type(v).__name__, v)\n"
            "print(item.name, item['qty'], spot.x, isinstance(item, dict), type(item).host_type)",
            variables=values)
    finally:
        interpreter.shutdown()
    assert shown.splitlines() == [
        "set {'a', 'b'}" if "{'a', 'b'}" in shown else "set {'b', 'a'}",
        "frozenset frozenset({1})",
        "tuple (1, (2, 3))",
        "bytes b'\\x00\\xff'",
        "date 2024-02-29",
        "datetime 2024-02-29 12:30:00+00:00",
        "dict {1: 'one', (2, 3): 'pair', None: 'none'}",
        "Item {'name': 'apple', 'qty': 2}",
        "Point {'x': 1, 'y': 2}",
        "dict {'$t': 'not a tag', 'k': [1]}",
        f"apple 2 1 True {__name__}.Item",
    ]


def test_values_return_to_the_host_as_plain_data() -> None:
    class Out(dspy.Signature):
        """Return things."""

        query: str = dspy.InputField()
        unique: set[str] = dspy.OutputField()
        pair: list[int] = dspy.OutputField()
        keyed: dict[int, str] = dspy.OutputField()
        item: Item = dspy.OutputField()

    rlm = dspy.RLM(Out, max_iters=2, interpreter_factory=ours())
    rlm.generate_action = scripted([
        "SUBMIT(unique={'x', 'y'}, pair=(1, 2), keyed={1: 'a'}, item={'name': 'n', 'qty': 1})"])
    result = rlm(query="q")
    assert (result.unique, result.pair, result.keyed, result.item) == \
        ({"x", "y"}, [1, 2], {1: "a"}, Item(name="n", qty=1))
    assert result.trajectory[-1]["output"].startswith("FINAL:")


def test_unchanged_inputs_are_not_sent_again_but_are_set_again(monkeypatch) -> None:
    from fleet_rlm.sandbox import base

    encoded: list[int] = []
    real_to_wire = base.to_wire

    def counting_to_wire(value, *args):
        encoded.append(len(value) if isinstance(value, list) else -1)
        return real_to_wire(value, *args)

    monkeypatch.setattr(base, "to_wire", counting_to_wire)
    interpreter = ours()()
    big = "word " * 50_000
    rows = [{"n": i} for i in range(20_000)]
    try:
        interpreter.start()
        session = interpreter.sandbox._session
        sent: list[dict] = []
        original = session._send

        def spy(message: dict, deadline: float) -> None:
            sent.append(message)
            original(message, deadline)

        session._send = spy
        variables = {"context": big, "rows": rows, "small": [1]}
        interpreter.execute("context = 'mine'\nrows.append(1)\nsmall.append(2)", variables)
        second = interpreter.execute("print(len(context), len(rows), small)", variables)
        assert second == f"{len(big)} 20000 [1]\n"
        set_vars = [m["name"] for m in sent if m.get("op") == "set_var"]
        assert set_vars == ["context", "rows", "small"]  # sent once each, restored after
        # The large list was encoded once: the same object is not read again. The small one is
        # compared each time (a change in place is seen); the string is never encoded.
        assert encoded == [20_000, 1, 1]
        executes = [m for m in sent if m.get("op") == "execute"]
        assert executes[0]["restore"] == [] and executes[1]["restore"] == \
            ["context", "rows", "small"]
        # A changed value is sent again.
        variables["small"] = [5]
        assert interpreter.execute("print(small)", variables) == "[5]\n"
        assert [m["name"] for m in sent if m.get("op") == "set_var"][-1] == "small"
    finally:
        interpreter.shutdown()


def test_dspy_context_reaches_llm_query_without_sub_lm() -> None:
    marker = contextvars.ContextVar("marker", default="global")

    class TaggedLM:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def __call__(self, prompt: str, **kwargs: Any) -> list[str]:
            return [f"{self.tag}:{marker.get()}:{prompt}"]

    rlm = dspy.RLM("query -> answer", max_iters=2, interpreter_factory=ours())
    rlm.generate_action = scripted([
        "one = llm_query('a')\nmany = llm_query_batched(['b', 'c'])\nprint(one, many)",
        "SUBMIT(answer=one + '|' + '|'.join(many))"])
    with dspy.context(lm=TaggedLM("request")):
        marker.set("local")
        result = rlm(query="q")
    assert result.answer == "request:local:a|request:local:b|request:local:c"


def test_tool_execution_semantics_and_dspy_callbacks_reach_tools() -> None:
    received, events = [], []

    async def score(payload: Payload, factor: int = 2):
        received.append((payload, factor))
        await asyncio.sleep(0)
        return payload.value * factor

    class Recorder(BaseCallback):
        def on_tool_start(self, call_id, instance, inputs):
            events.append(("start", instance))

        def on_tool_end(self, call_id, outputs, exception):
            events.append(("end", outputs, exception))

    tool = dspy.Tool(score, name="score_payload")
    rlm = dspy.RLM("query -> answer: int", max_iters=1, tools=[tool], interpreter_factory=ours())
    execution_tool = rlm._prepare_execution_tools()["score_payload"]
    assert inspect.signature(execution_tool) == inspect.signature(score)
    rlm.generate_action = scripted(["result = score_payload({'value': 3})\nSUBMIT(result)"])
    with dspy.context(callbacks=[Recorder()]):
        result = rlm(query="test")
    assert result.answer == 6
    assert len(received) == 1 and isinstance(received[0][0], Payload)
    assert received[0] == (Payload(value=3), 2)
    assert events == [("start", tool), ("end", 6, None)]


def test_a_tool_that_calls_back_into_its_interpreter_gets_a_clear_error() -> None:
    interpreter = SandboxInterpreter(create_sandbox(Settings()))

    def reenter() -> str:
        return interpreter.execute("print('inner')")

    interpreter.tools["reenter"] = reenter
    try:
        shown = interpreter.execute(
            "try:\n    reenter()\nexcept RuntimeError as exc:\n    print(exc)")
        assert "reenter() failed: CodeInterpreterError: a host function cannot call back into " \
               "the sandbox whose code called it" in shown
        assert "poll" not in shown
        assert interpreter.execute("print('still fine')") == "still fine\n"
    finally:
        interpreter.shutdown()


# -- equivalents of dspy's PythonInterpreter tests ----------------------------------------------
@pytest.fixture
def interpreter():
    made = ours()()
    yield made
    made.shutdown()


def test_variable_injection_with_none_values(interpreter) -> None:
    assert "15" in interpreter.execute("print(x + y)", variables={"x": 10, "y": 5})
    assert "True" in interpreter.execute("print(data['key'] is None)",
                                         variables={"data": {"key": None, "other": "value"}})
    assert "True" in interpreter.execute("print(items[1] is None)",
                                         variables={"items": [1, None, 3]})
    assert "True" in interpreter.execute("print(nested['inner']['value'] is None)",
                                         variables={"nested": {"inner": {"value": None}}})


def test_tools_by_keyword_and_position_returning_lists_and_dicts(interpreter) -> None:
    interpreter.tools.update({
        "echo": lambda message="": f"Echo: {message}",
        "greet": lambda name: f"Hello: {name}",
        "add": lambda a=0, b=0: str(a + b),
        "batch_process": lambda items=None: [f"processed_{i}" for i in items or []],
        "get_info": lambda: {"name": "test", "count": 42}})
    assert "Echo: hello" in interpreter.execute('print(echo(message="hello"))')
    assert "Hello: world" in interpreter.execute('print(greet("world"))')
    assert "Sum: 7" in interpreter.execute("print(f'Sum: {add(a=3, b=4)}')")
    listed = interpreter.execute("r = batch_process(items=['a', 'b'])\n"
                                 "print(type(r).__name__, len(r), r[0])")
    assert listed == "list 2 processed_a\n"
    info = interpreter.execute("i = get_info()\nprint(type(i).__name__, i['name'], i['count'])")
    assert info == "dict test 42\n"


def test_state_persists_and_errors_are_dspys_exceptions(interpreter) -> None:
    interpreter.execute("x = 10")
    assert "15" in interpreter.execute("print(x + 5)")
    with pytest.raises(SyntaxError):
        interpreter.execute("def incomplete(")
    with pytest.raises(dspy.CodeExecutionError):
        interpreter.execute("undefined_variable")


def test_start_is_idempotent_and_a_failing_tool_is_recoverable() -> None:
    def failing_tool() -> str:
        raise RuntimeError("Tool failed!")

    made = ours()()
    try:
        made.start()
        session = made.sandbox._session
        made.start()
        assert made.sandbox._session is session
    finally:
        made.shutdown()
    rlm = dspy.RLM("query -> answer", max_iters=3, tools=[failing_tool],
                   interpreter_factory=ours())
    rlm.generate_action = scripted(["failing_tool()", 'SUBMIT("recovered")'])
    result = rlm(query="test")
    assert result.answer == "recovered"
    assert "failing_tool() failed: RuntimeError: Tool failed!" in result.trajectory[0]["output"]


class Blob(SandboxSerializable):
    """A SandboxSerializable input: dspy sends its payload as a `_raw_` variable."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def sandbox_setup(self) -> str:
        return ""

    def to_sandbox(self) -> bytes:
        return self.payload

    def sandbox_assignment(self, var_name: str, data_expr: str) -> str:
        return f"{var_name} = {data_expr}"

    def rlm_preview(self, max_chars: int = 500) -> str:
        return f"Blob({len(self.payload)} bytes)"


@pytest.mark.parametrize("payload", [b"abc123" * (200 * 1024), b"\xff\xfe\xfd"],
                         ids=["large text", "binary"])
def test_sandbox_serializable_payloads_round_trip(payload: bytes) -> None:
    rlm = dspy.RLM("data -> answer: int", max_iters=2, interpreter_factory=ours())
    rlm.generate_action = scripted(["SUBMIT(len(data))"])
    assert rlm(data=Blob(payload)).answer == len(payload)


def test_shut_down_interpreter_refuses_to_run() -> None:
    made = ours()()
    assert isinstance(made, dspy.CodeInterpreter)
    assert made("print('called')") == "called\n"
    made.execute("x = 1")
    made.shutdown()
    with pytest.raises(dspy.CodeInterpreterError, match="shut down"):
        made.execute("print('closed')")


# -- equivalents of dspy's RLM type-coercion and multiple-output tests --------------------------
@pytest.mark.parametrize(("field", "kind", "code", "expected"), [
    ("count", "int", "SUBMIT(42)", 42),
    ("score", "float", "SUBMIT(3.14)", 3.14),
    ("valid", "bool", "SUBMIT(True)", True),
    ("numbers", "list[int]", "SUBMIT([1, 2, 3])", [1, 2, 3]),
    ("data", "dict[str, str]", 'SUBMIT({"key": "value"})', {"key": "value"}),
    ("answer", "Literal['yes', 'no']", 'SUBMIT("yes")', "yes"),
])
def test_submit_is_coerced_to_the_output_type(field, kind, code, expected) -> None:
    signature = dspy.Signature(f"query -> {field}: {kind}", custom_types={"Literal": Literal})
    rlm = dspy.RLM(signature, max_iters=2, interpreter_factory=ours())
    rlm.generate_action = scripted([code])
    value = getattr(rlm(query="test"), field)
    assert value == expected and type(value) is type(expected)


def test_multiple_outputs_by_keyword_position_and_after_a_missing_field() -> None:
    rlm = dspy.RLM("query -> name: str, count: int", max_iters=3, interpreter_factory=ours())
    rlm.generate_action = scripted(['SUBMIT(name="alice")', 'n = "bob"\nSUBMIT(n, 10)'])
    result = rlm(query="test")
    assert (result.name, result.count) == ("bob", 10)
    assert "count" in result.trajectory[0]["output"]
