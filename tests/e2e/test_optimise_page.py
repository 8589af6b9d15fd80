"""The Optimise page in a real browser: a version made by `fleet optimize run` on the same data
dir, its scores and prompt diff, Promote, the next turn showing the version it ran, Roll back."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from playwright.sync_api import Page, expect
from test_workbench import ask, last_turn, new_session, shot

from conftest import fleet_command, fleet_env
from fleet_rlm.testing import (
    AGENT_ANSWER,
    ScriptedLMServer,
    dspy_agent_step,
    dspy_json_reply,
    dspy_reply,
)

CAPITALS = [("France", "PARIS"), ("Italy", "ROME"), ("Spain", "MADRID"), ("Japan", "TOKYO")]
RULE = "Answer with the city's name in UPPERCASE letters only."


def rules() -> list[dict]:
    found: list[dict] = [{"model": "reflect", "reply": dspy_json_reply(new_instruction=RULE)}]
    for country, city in CAPITALS:
        asked = rf"(?=.*capital of {country}\?)(?=.*{AGENT_ANSWER})"
        found.append({"model": "root", "match": rf"^(?=.*{re.escape(RULE)}){asked}",
                      "reply": dspy_reply(reasoning="as instructed", answer=city)})
        found.append({"model": "root", "match": rf"^{asked}",
                      "reply": dspy_reply(reasoning="known", answer=city.title())})
    found.append({"model": "root", "match": "next_thought",
                  "reply": dspy_agent_step("I know this", "finish")})
    return found


def fleet(data: Path, scripted: ScriptedLMServer, *args: str) -> str:
    env = {**fleet_env(data, scripted), "FLEET_ALLOW_UNPRICED_MODELS": "true"}
    done = subprocess.run([str(fleet_command()), *args], cwd=data, env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_promote_a_version_and_roll_it_back(page: Page, scripted: ScriptedLMServer,
                                            fleet_data: Path) -> None:
    scripted.set_rules(rules())
    examples = fleet_data / "capitals.jsonl"
    examples.write_text("\n".join(json.dumps({"question": f"What is the capital of {c}?",
                                              "answer": city}) for c, city in CAPITALS))
    fleet(fleet_data, scripted, "optimize", "dataset", "create", "capitals", "--jsonl",
          str(examples))
    fleet(fleet_data, scripted, "optimize", "run", "agent", "--dataset", "capitals",
          "--metric", "exact", "--max-metric-calls", "16", "--reflection-model",
          "openai/reflect")

    page.goto("/#/optimise")
    agent = page.get_by_role("region", name="Chat agent")
    expect(page.get_by_role("region", name="Datasets")).to_contain_text("capitals")
    expect(agent).to_contain_text("New turns run the baseline")
    version = agent.get_by_test_id("version-agent:1")
    expect(version).to_contain_text("validation 0.000 → 1.000")
    version.get_by_role("button", name="Prompt diff").click()
    expect(version.get_by_label("Prompt diff of agent:1").locator(".diff-add")).to_contain_text(
        RULE)
    version.get_by_role("button", name="Promote agent:1").click()
    expect(agent).to_contain_text("New turns run agent:1")
    expect(version).to_contain_text("promoted")
    shot(page, "30-optimise-promoted")

    new_session(page)
    ask(page, "What is the capital of Italy?")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(turn).to_contain_text("ROME")
    expect(turn.get_by_test_id("turn-programs")).to_contain_text("program agent")

    page.goto("/#/optimise")
    agent = page.get_by_role("region", name="Chat agent")
    agent.get_by_role("button", name="Roll back agent").click()
    expect(agent).to_contain_text("New turns run the baseline")


def test_a_run_started_on_the_page_adds_a_version(page: Page, scripted: ScriptedLMServer,
                                                  fleet_data: Path) -> None:
    # From the page the reflection model is the root model: its prompt asks for new_instruction.
    scripted.set_rules([{"model": "root", "match": "new_instruction",
                         "reply": dspy_json_reply(new_instruction=RULE)},
                        *[r for r in rules() if r.get("model") != "reflect"]])
    examples = fleet_data / "web.jsonl"
    examples.write_text("\n".join(json.dumps({"question": f"What is the capital of {c}?",
                                              "answer": city}) for c, city in CAPITALS))
    fleet(fleet_data, scripted, "optimize", "dataset", "create", "from-web", "--jsonl",
          str(examples))

    page.goto("/#/optimise")
    form = page.get_by_role("form", name="Start an optimisation run")
    form.get_by_label("Dataset").select_option("from-web")
    form.get_by_role("button", name="Optimise").click()
    run = page.get_by_test_id("optimisation-run").first
    expect(run).to_have_attribute("data-state", "done", timeout=120_000)
    expect(run).to_contain_text("best validation")
    shot(page, "31-optimise-run")
    agent = page.get_by_role("region", name="Chat agent")
    expect(agent.get_by_test_id(re.compile(r"version-agent:\d+")).filter(
        has_text="dataset from-web")).to_contain_text("→")
