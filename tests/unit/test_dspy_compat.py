"""Every private dspy name the engine relies on is still where dspy_compat says it is.

A failure here names the name and what moved: update fleet_rlm/engine/dspy_compat.py (and the
engine code using it) for the new dspy version, not the call sites one by one.
"""

from __future__ import annotations

import importlib
import inspect

import dspy
import pytest

from fleet_rlm.engine import dspy_compat


def _moved(what: str) -> str:
    return (f"dspy {dspy.__version__}: {what}; fleet_rlm.engine.dspy_compat must be updated for "
            "this dspy version")


@pytest.mark.parametrize(("module", "name"), dspy_compat.IMPORTED,
                         ids=[f"{m}.{n}" for m, n in dspy_compat.IMPORTED])
def test_imported_name_exists(module: str, name: str) -> None:
    try:
        found = importlib.import_module(module)
    except ImportError:
        pytest.fail(_moved(f"module {module} is gone (it held {name})"))
    if not hasattr(found, name):
        pytest.fail(_moved(f"{module} has no {name}"))


@pytest.mark.parametrize(("owner", "name"), list(dspy_compat.METHODS),
                         ids=[f"{c.__name__}.{n}" for c, n in dspy_compat.METHODS])
def test_private_method_keeps_its_parameters(owner: type, name: str) -> None:
    method = getattr(owner, name, None)
    if not callable(method):
        pytest.fail(_moved(f"{owner.__module__}.{owner.__name__} has no method {name}"))
    params = tuple(p for p in inspect.signature(method).parameters if p != "self")
    expected = dspy_compat.METHODS[(owner, name)]
    if params != expected:
        pytest.fail(_moved(f"{owner.__name__}.{name} now takes {params}, not {expected}"))


def lookup(term: str) -> str:
    """Look a term up."""
    return term


def _instance(owner: type) -> object:
    if owner is dspy.RLM:
        return dspy.RLM("question -> answer", tools=[lookup])
    if owner is dspy_compat.FacadeInvocation:
        return dspy_compat.FacadeInvocation({}, lambda: None, None, custom_types={"T": int})
    raise AssertionError(f"no instance recipe for {owner}")


@pytest.mark.parametrize(("module", "name"), list(dspy_compat.FUNCTIONS),
                         ids=[f"{m}.{n}" for m, n in dspy_compat.FUNCTIONS])
def test_replaced_function_keeps_its_parameters(module: str, name: str) -> None:
    function = getattr(importlib.import_module(module), name, None)
    if not callable(function):
        pytest.fail(_moved(f"{module} has no function {name}"))
    params = tuple(inspect.signature(function).parameters)
    expected = dspy_compat.FUNCTIONS[(module, name)]
    if params != expected:
        pytest.fail(_moved(f"{module}.{name} now takes {params}, not {expected}"))


@pytest.mark.parametrize(("owner", "name"), dspy_compat.ATTRIBUTES,
                         ids=[f"{c.__name__}.{n}" for c, n in dspy_compat.ATTRIBUTES])
def test_private_attribute_is_set(owner: type, name: str) -> None:
    if not hasattr(_instance(owner), name):
        pytest.fail(_moved(f"a new {owner.__name__} has no attribute {name}"))


def test_the_accessors_read_what_was_given() -> None:
    rlm = _instance(dspy.RLM)
    assert "lookup" in dspy_compat.user_tools(rlm)
    assert dspy_compat.custom_types(_instance(dspy_compat.FacadeInvocation)) == {"T": int}


def test_the_private_helpers_behave_as_the_engine_expects() -> None:
    assert dspy_compat.strip_code_fences("```python\nprint(1)\n```").strip() == "print(1)"
    budget = dspy_compat.LLMCallBudget(1)
    budget.reserve()
    with pytest.raises(Exception, match=r"(?i)limit|exceed|budget"):
        budget.reserve()
    assert dspy_compat.resolve_signature("a -> b", None).output_fields.keys() == {"b"}


def test_no_private_dspy_name_outside_the_compat_module() -> None:
    import pathlib
    import re

    src = pathlib.Path(dspy_compat.__file__).parents[1]
    private = re.compile(r"from dspy[\w.]* import [^\n]*\b_[A-Za-z]|dspy\.\w+\._[a-z]|"
                         r"from dspy\.(primitives\.(facade|repl_types)|predict\.rlm) import")
    offenders = [f"{path.relative_to(src)}:{n}" for path in src.rglob("*.py")
                 if path.name != "dspy_compat.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if private.search(line)]
    assert offenders == [], f"private dspy names outside dspy_compat: {offenders}"
