"""The engine sits under the session layer: no module of it imports `sessions` or `store`, not
even inside a function. Whoever wants a stored version (the promoted program) reads it and
passes it in (`fleet_rlm.RecursiveRLM` through `api.py`, `fleet run`, MCP's rlm_query)."""

from __future__ import annotations

import ast
from pathlib import Path

import fleet_rlm.engine

ENGINE = Path(fleet_rlm.engine.__file__).parent
ABOVE = ("fleet_rlm.sessions", "fleet_rlm.store", "fleet_rlm.server", "fleet_rlm.cli")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code, relative imports resolved."""
    package = ["fleet_rlm", "engine"]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_imports_are_resolved():
    names = imported_modules(ENGINE / "rlm.py")
    assert "fleet_rlm.sandbox" in names and "fleet_rlm.engine.programs" in names, sorted(names)


def test_the_engine_imports_nothing_above_it():
    crossing = {f"{path.name}: {name}" for path in ENGINE.glob("*.py")
                for name in imported_modules(path) if name.startswith(ABOVE)}
    assert not crossing, sorted(crossing)
