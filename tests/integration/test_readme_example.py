"""The README's Python API example runs as written against the scripted model."""

from __future__ import annotations

import re
from pathlib import Path

import dspy

from fleet_rlm.testing import dspy_reply

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- example: python-api -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "README lost its Python API example"
    return match.group(1)


def test_readme_python_api_example_runs(scripted_lm, tmp_path, monkeypatch, capsys):
    step = r"\[\[ ## iteration ## \]\]\n{}/"
    server = scripted_lm([
        {"match": step.format(1), "times": 1,
         "reply": dspy_reply(reasoning="Scan for quarters.",
                             code="import re\n"
                                  "q = re.findall(r'(Q\\d): (\\d+)', context)\nprint(q)")},
        {"match": step.format(2), "times": 1,
         "reply": dspy_reply(reasoning="Pick the largest.",
                             code="SUBMIT(answer=max(q, key=lambda p: int(p[1]))[0])")},
    ])
    (tmp_path / "report.txt").write_text("Revenue. Q1: 10\nQ2: 40\nQ3: 25\nQ4: 30\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_BASE", server.api_base)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    try:
        exec(compile(readme_example(), str(README), "exec"), {"__name__": "__readme__"})
    finally:
        dspy.configure(lm=None)  # the example configures dspy globally

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Q2"
    assert lines[1] == "ok"
    calls, usd = lines[2].split()
    assert int(calls) == server.stats()["calls"] == 2
    assert float(usd) > 0  # gpt-4o-mini has a price in LiteLLM's table
