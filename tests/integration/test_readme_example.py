"""The README's examples, the Python API and the chat agent, run as written against the
scripted model."""

from __future__ import annotations

import re
from pathlib import Path

import dspy

from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_reply

README = Path(__file__).parents[2] / "README.md"


def readme_example(name: str) -> str:
    """The code of the README's Python block marked `<!-- example: name -->`."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README lost its {name} example"
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
        exec(compile(readme_example("python-api"), str(README), "exec"), {"__name__": "__readme__"})
    finally:
        dspy.configure(lm=None)  # the example configures dspy globally

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Q2"
    assert lines[1] == "ok"
    calls, usd = lines[2].split()
    assert int(calls) == server.stats()["calls"] == 2
    assert float(usd) > 0  # gpt-4o-mini has a price in LiteLLM's table


def test_readme_agent_example_runs(scripted_lm, tmp_path, monkeypatch, capsys):
    clause = "Either party may end this contract on 30 days' written notice."
    server = scripted_lm([
        {"model": "gpt-4o-mini", "match": AGENT_ANSWER, "reply": dspy_reply(
            reasoning="from the trajectory",
            answer="It ends on 31 March 2026; either side needs 30 days' written notice.")},
        {"model": "gpt-4o-mini", "match": "observation_0", "times": 1,
         "reply": dspy_agent_step("I have the clauses", "finish")},
        {"model": "gpt-4o-mini", "match": "contract.txt \\(text, \\d+ chars\\).*next_thought",
         "times": 1,
         "reply": dspy_agent_step("short: read it", "read_document", name="contract.txt")},
    ])
    (tmp_path / "contract.txt").write_text(
        f"Term. This contract runs until 31 March 2026.\nTermination. {clause}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET_API_BASE", server.api_base)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    namespace = {"__name__": "__readme__"}
    exec(compile(readme_example("agent-api"), str(README), "exec"), namespace)

    lines = capsys.readouterr().out.splitlines()
    assert lines == ["done", "It ends on 31 March 2026; either side needs 30 days' written notice.",
                     "7"]
    server.verify()
    agent = namespace["agent"]
    events = agent.run.stream.events
    assert [e.type for e in events].count("lm_call") == server.stats()["calls"] == 3
    (read,) = [e for e in events if e.type == "tool_result" and e.tool_name == "read_document"]
    assert clause in read.output
    assert agent.run.budget.snapshot().usd > 0  # gpt-4o-mini has a price in LiteLLM's table
