"""How the driver compiles a cell: the value of a last statement that is an expression is shown,
decided from the bytecode where it can be and by Python's AST otherwise, with the same result."""

from __future__ import annotations

import ast
import io

import pytest

from fleet_rlm.sandbox import driver

SETUP = ("r = [1, 2]\nx = 3\nclass E(Exception): pass\nclass A:\n"
         "    def __enter__(self): return 1\n"
         "    def __exit__(self, *a): return False\na = A()\nf = lambda *a: 7\ng = f\n")

CELLS = [
    "", "x = 1", "x", "print(x)", "x + 1", "f()", "x = 1\nx", "x = 1\n42", "42", "'text'",
    "x = 1\n'text'", "x = 1; x", "x = 1; 42", "x; y = 2", "f()\n42", "f()\npass", "f();",
    "f() # why\n\n# more\n", "f(\n  1,\n  2)", "f(\n  1,\n  2)  # end", "y = [\n1]\ny",
    "for i in r:\n    f(i)", "for i in r: f(i)", "for i in r:\n    f(i)\nx",
    "if x:\n    f()", "if x: f()", "if x:\n    y = 1\nelse:\n    y = 2", "if x:\n    pass",
    "while x > 2:\n    x -= 1", "try:\n    f()\nexcept E:\n    g()",
    "try:\n    f()\nfinally:\n    g()",
    "with a:\n    f()", "with a: f()", "with a as b:\n    b", "def h():\n    return 1",
    "def h():\n    return 1\nh()", "class B:\n    pass", "import os", "import os\nos.sep",
    "from os import *", "global x", "x = 1\nglobal x", "del x", "assert x", "x += 1", "x: int = 1",
    "x: int", "@staticmethod\ndef h(): pass", "[i for i in r]", "lambda: 1", "not x", "None",
    "True", "...", "x = 1\n...", "match x:\n    case 3:\n        f()",
    "match x:\n    case 3:\n        y = 1",
    "x if x else 0", "(x)", "-x", "{'a': 1}", "r[0]", "a.__enter__()", "await_ = 1\nawait_",
    "_ = 5\n_", "type = 4\ntype", "é = 1\né", "s = 'é'\ns", "s = 'é'; s", "x = '#'\nx",
    "x = 1 \\\n  + 2\nx", "\n\nx\n\n", "x\r\n", "if x:\n    f()\n42", "print('a')\nprint('b')",
]


def reference(code: str, namespace: dict) -> object:
    """The behaviour the driver keeps: run all but a last expression, then evaluate that."""
    tree = ast.parse(code)
    last = tree.body.pop().value if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    return None if last is None else eval(compile(ast.Expression(last), "<cell>", "eval"),
                                          namespace)


def run(code: str, namespace: dict) -> object:
    compiled, shows = driver.compile_cell(code, "<cell>")
    exec(compiled, namespace)
    return namespace.pop(driver.SHOWN, None) if shows else None


def shown(outcome: tuple) -> tuple:
    kind, value = outcome
    return (kind, type(value).__name__) if callable(value) and kind == "value" else outcome


def fresh() -> dict:
    namespace: dict = {}
    exec(SETUP, namespace)
    return namespace


@pytest.mark.parametrize("code", CELLS)
def test_a_cell_shows_what_the_ast_says_it_shows(code: str) -> None:
    try:
        expected_namespace = fresh()
        expected = ("value", reference(code, expected_namespace))
    except Exception as exc:  # noqa: BLE001 - the same failure is expected
        expected, expected_namespace = ("error", type(exc)), {}
    try:
        namespace = fresh()
        got = ("value", run(code, namespace))
    except Exception as exc:  # noqa: BLE001
        got, namespace = ("error", type(exc)), {}
    assert shown(got) == shown(expected)
    assert sorted(k for k in namespace if k != "__builtins__") == \
        sorted(k for k in expected_namespace if k != "__builtins__")


@pytest.mark.parametrize(("code", "decided"), [
    ("x = 1", False), ("print(x)", True), ("x = 1\nx", True), ("for i in r:\n    f(i)", False),
    ("import os", False), ("def h():\n    return 1", False), ("f(\n  1)  # end\n", True),
    ("if x:\n    y = 1\nelse:\n    y = 2", False)])
def test_common_cells_are_decided_from_the_bytecode(code: str, decided: bool) -> None:
    """The usual shapes of a cell never take the slower trip through the AST."""
    last = driver._last_statement(code, compile(code, "<cell>", "exec"))  # noqa: SLF001
    assert last is not None
    assert (last is not False) == decided


def test_the_last_expression_is_shown_once_and_its_name_is_not_kept() -> None:
    worker_out = driver.CappedText(1000)
    namespace: dict = {}
    worker = driver.Worker.__new__(driver.Worker)
    worker.namespace = namespace
    worker.run_cell("x = 2\nx * 21", "<cell>", worker_out)
    worker.run_cell("None", "<cell>", worker_out)
    assert worker_out.value() == "42\n"
    assert driver.SHOWN not in namespace
    buffer = io.StringIO()
    buffer.write(worker_out.value())
    assert buffer.getvalue().count("42") == 1
