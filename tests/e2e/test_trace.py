"""The trace inspector in a real browser against a real `fleet web` and the scripted LM server:
a call's prompt and reply, the timeline of a turn, the turns view with its search and deep
links, Compare, and usage by model.

The turns are the Workbench's (test_workbench.script): the agent delegates to a depth-1 RLM whose
first cell runs a batch of two sub-calls and a depth-2 child RLM.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import LOCAL_TOKEN, sign_in
from playwright.sync_api import Page, expect
from test_workbench import ask, attach, last_turn, new_session, node, script, shot

from conftest import ROOT, fleet_command, fleet_env, running_fleet_web
from fleet_rlm.testing import AGENT_ANSWER, ScriptedLMServer, dspy_agent_step, dspy_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def finished_turn(page: Page, scripted: ScriptedLMServer, question: str, delay_ms: int = 0) -> str:
    """A new session with the document, one finished turn asking `question`; the session id."""
    scripted.set_rules(script(delay_ms=delay_ms))
    session = new_session(page)
    attach(page)
    ask(page, question)
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    return session


def inspector(page: Page):
    return page.get_by_test_id("call-inspector")


def test_open_a_calls_prompt_and_reply_from_the_tree(page: Page,
                                                      scripted: ScriptedLMServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    finished_turn(page, scripted, "Which needles does big.txt hold?")
    rlm = node(page, "rlm", 1)
    # The child RLM says what it was asked.
    expect(node(page, "rlm", 2).get_by_test_id("rlm-query").first).to_contain_text(
        "How many needles in this part?")

    rlm.get_by_role("button", name="Open the root call of iteration 1").first.click()
    call = inspector(page)
    expect(call).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/s/\w+/t/\w+/n/[^/]+/c/\w+$"))
    expect(call.locator("[data-fact=model]")).to_have_text("openai/root")
    expect(call.locator("[data-fact='finish reason']")).to_have_text("stop")
    expect(call.locator("[data-fact='retries before']")).to_have_text("0")
    messages = call.get_by_test_id("call-message")
    expect(messages.first).to_have_attribute("data-role", "system")
    expect(messages.last).to_have_attribute("data-role", "user")
    expect(messages.last).to_contain_text("Variable: `question`")
    expect(call.get_by_test_id("call-reply")).to_contain_text("Split, ask sub-models")
    expect(call.get_by_test_id("prompt-missing")).to_have_count(0)

    # The long instructions are folded until asked for.
    unfold = call.get_by_role("button", name=re.compile(r"Show all of the system message"))
    expect(unfold).to_be_visible()
    folded = len(messages.first.locator("pre").inner_text())
    unfold.click()
    assert len(messages.first.locator("pre").inner_text()) > folded
    shot(page, "20-call-inspector")

    call.get_by_role("button", name="Copy the reply").click()
    expect(call.get_by_role("status").first).to_have_text("copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "Split, ask sub-models" in copied

    # A sub-call opens from its list under the cell that made it.
    page.keyboard.press("Escape")
    expect(call).to_have_count(0)
    rlm.get_by_role("button", name="Show sub-LM calls").click()
    rlm.get_by_role("button", name=re.compile(r"Open the sub call \d+")).first.click()
    expect(call.locator("[data-fact=model]")).to_have_text("openai/sub")
    expect(call.get_by_test_id("call-message").last).to_contain_text("Count needles in")
    expect(call.get_by_test_id("call-reply")).to_contain_text("2")


def test_the_timeline_of_a_turn_with_a_child_rlm_and_a_batch_of_sub_calls(
        page: Page, scripted: ScriptedLMServer) -> None:
    finished_turn(page, scripted, "How many needles, timed?", delay_ms=300)
    page.get_by_role("radio", name="Show the timeline").click()
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_be_visible()
    nodes = timeline.locator("[data-testid=timeline-bar][data-kind=node]")
    expect(nodes).to_have_count(3)  # the agent, the RLM, its child
    expect(timeline.locator("[data-kind=code]")).to_have_count(4)

    # The batch's two sub-calls ran at once: side by side, on rows of their own, overlapping.
    subs = timeline.locator("[data-kind=call][aria-label^='sub ']")
    expect(subs).to_have_count(2)
    a, b = subs.nth(0).bounding_box(), subs.nth(1).bounding_box()
    assert a and b and a["y"] != b["y"], (a, b)
    assert a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"], (a, b)

    # The critical path runs through the agent, the RLM and the child.
    critical = timeline.locator("[data-critical=true]")
    for span in ("node:", "code:"):
        expect(critical.and_(page.locator(f"[data-span^='{span}']")).first).to_be_visible()
    assert timeline.locator("[data-kind=node][data-critical=true]").count() == 3
    shot(page, "21-timeline")

    # Hover says how long a bar took; a click opens its step.
    subs.first.hover()
    expect(page.get_by_test_id("timeline-hover")).to_contain_text(
        re.compile(r"sub · openai/sub: \d+ ms"))
    subs.first.click()
    expect(inspector(page).locator("[data-fact=role]")).to_have_text("sub")
    page.get_by_role("button", name="Close the call (Esc)").click()
    child = timeline.locator("[data-kind=node]").nth(2)
    child.click()
    expect(page.get_by_role("radio", name="Show the tree")).to_have_attribute(
        "aria-checked", "true")
    expect(node(page, "rlm", 2)).to_have_attribute("data-selected", "true")


def test_search_turns_and_open_a_deep_link(page: Page, scripted: ScriptedLMServer) -> None:
    word = f"needle{secrets.token_hex(3)}"
    finished_turn(page, scripted, f"Count every {word} here")
    page.get_by_role("link", name="Turns").click()
    search = page.get_by_role("search", name="Search turns")
    search.get_by_role("searchbox", name="Text of the question or answer").fill(word)
    search.get_by_role("button", name="Search turns").click()
    expect(page).to_have_url(re.compile(rf"#/turns\?q={word}"))
    rows = page.get_by_test_id("turn-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("openai/root")

    # Filters narrow the same search: a status it does not have, a cost range, then a tag.
    search.get_by_role("combobox", name="Status").select_option("error")
    search.get_by_role("button", name="Search turns").click()
    expect(page.get_by_text("No turn matches.")).to_be_visible()
    search.get_by_role("combobox", name="Status").select_option("ok")
    search.get_by_role("spinbutton", name="Longest duration in seconds").fill("600")
    search.get_by_role("button", name="Search turns").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("button", name=re.compile("Edit the tags")).click()
    tags = rows.first.get_by_role("textbox", name=re.compile("Tags of turn"))
    tags.fill("golden, e2e")
    tags.press("Enter")
    expect(rows.first.locator(".tag")).to_have_count(2)
    page.goto(f"/#/turns?tag=golden&q={word}")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name="Sort by cost").click()
    expect(page).to_have_url(re.compile(r"sort=cost_usd&order=desc"))
    expect(page.get_by_role("columnheader", name="Sort by cost")).to_have_attribute(
        "aria-sort", "descending")
    shot(page, "22-turns")

    # The question opens the turn in its session…
    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"#/s/\w+/t/\w+$"))
    expect(page.get_by_role("combobox", name="Turn shown in the tree").locator(
        "option:checked")).to_contain_text(word)
    # …and the address of a call opens exactly that call, in a fresh page.
    node(page, "rlm", 2).get_by_role("button", name="Open the root call of iteration 1").click()
    expect(inspector(page)).to_be_visible()
    seq = inspector(page).get_attribute("data-call-seq")
    link = page.url
    other = page.context.new_page()
    other.goto(link)
    expect(other.get_by_test_id("call-inspector")).to_have_attribute("data-call-seq", seq or "")
    expect(other.get_by_test_id("call-message").last).to_contain_text(
        "How many needles in this part?")
    # A node's address marks that node.
    other.goto(link.rsplit("/c/", 1)[0])
    expect(other.get_by_test_id("call-inspector")).to_have_count(0)
    expect(node(other, "rlm", 2)).to_have_attribute("data-selected", "true")
    other.close()


def test_compare_two_turns_and_their_usage_by_model(page: Page,
                                                    scripted: ScriptedLMServer) -> None:
    word = f"pair{secrets.token_hex(3)}"
    finished_turn(page, scripted, f"First {word}: how many needles?")
    scripted.set_rules([
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="Known.", answer="No need to count.")},
        {"match": "next_thought", "model": "root", "reply": dspy_agent_step("done", "finish")},
    ])
    ask(page, f"Second {word}: never mind")
    expect(page.get_by_test_id("turn")).to_have_count(2)
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)

    page.goto(f"/#/turns?q={word}")
    rows = page.get_by_test_id("turn-row")
    expect(rows).to_have_count(2)
    for i in range(2):
        rows.nth(i).get_by_role("checkbox").check()
    page.get_by_role("button", name="Compare the two ticked turns").click()
    expect(page).to_have_url(re.compile(r"#/compare/\w+/\w+"))
    compare = page.get_by_role("table", name="Two turns side by side")
    row = lambda label: compare.locator(f"[data-testid=compare-row][data-label='{label}']")  # noqa: E731
    expect(row("question")).to_have_attribute("data-differs", "true")
    expect(row("question")).to_contain_text(f"First {word}")
    expect(row("models")).to_have_attribute("data-differs", "true")  # the second calls no sub
    expect(row("limits")).to_have_attribute("data-differs", "false")
    expect(row("answer")).to_contain_text("No need to count.")
    expect(row("tree shape")).to_contain_text("RLM d2")
    expect(row("calls")).to_have_attribute("data-differs", "true")
    shot(page, "23-compare")

    # Usage by model for the first turn, from its tree.
    compare.get_by_role("link", name="Turn 1", exact=True).click()
    page.get_by_role("link", name="Cost of this turn per model").click()
    expect(page).to_have_url(re.compile(r"#/usage\?turn=\w+"))
    usage = page.get_by_role("table", name="Usage by model and role")
    expect(usage.locator("[data-model='openai/sub'][data-role=sub] td").nth(2)).to_have_text("2")
    expect(usage.locator("[data-model='openai/root'][data-role=root]")).to_have_count(1)
    expect(usage.locator("[data-model='openai/root'][data-role=agent]")).to_have_count(1)
    page.get_by_role("radio", name="Usage by model for a session").click()
    expect(page).to_have_url(re.compile(r"#/usage\?session="))
    expect(usage.locator("tbody tr")).not_to_have_count(0)
    page.get_by_role("radio", name="Usage by model for a date range").click()
    expect(usage.locator("[data-model='openai/sub']")).to_have_count(1)
    shot(page, "24-usage-by-model")


@pytest.fixture(scope="module")
def fleet_web_small_store(frontend_build: Path, scripted: ScriptedLMServer,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`fleet web` whose call store keeps no call above 100 bytes: every call goes unkept."""
    data_dir = tmp_path_factory.mktemp("fleet-data-small-store")
    env = fleet_env(data_dir, scripted, FLEET_TOKEN=LOCAL_TOKEN,
                    FLEET_CAPTURE_MAX_CALL_MB="0.0001")
    with running_fleet_web(data_dir, env) as base:
        yield base


def test_a_call_not_kept_says_why(browser, fleet_web_small_store: str,
                                  scripted: ScriptedLMServer) -> None:
    context = browser.new_context(base_url=fleet_web_small_store,
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        sign_in(page)
        scripted.set_rules([
            {"match": AGENT_ANSWER, "model": "root",
             "reply": dspy_reply(reasoning="Known.", answer="Paris.")},
            {"match": "next_thought", "model": "root",
             "reply": dspy_agent_step("done", "finish")},
        ])
        new_session(page)
        ask(page, "The capital of France?")
        expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
        page.get_by_role("button", name="Open the agent call of step finish").click()
        missing = inspector(page).get_by_test_id("prompt-missing")
        expect(missing).to_contain_text(re.compile(r"prompt not captured: .*\S"))
        # What the event holds still shows.
        expect(inspector(page).locator("[data-fact=model]")).to_have_text("openai/root")
        expect(inspector(page)).to_contain_text("prompt (preview from the event)")
        shot(page, "25-call-not-kept")
    finally:
        context.close()


def test_a_retried_call_shows_its_attempts(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules([
        {"status": 429, "retry_after": "0", "times": 1},
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="Known.", answer="Rome.")},
        {"match": "next_thought", "model": "root", "reply": dspy_agent_step("done", "finish")},
    ])
    new_session(page)
    ask(page, "The capital of Italy, after a rate limit?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    page.get_by_role("button", name="Open the agent call of step finish").click()
    call = inspector(page)
    expect(call.locator("[data-fact=attempt]")).to_have_text("2")
    expect(call.locator("[data-fact='retries before']")).to_have_text("1")
    expect(call.get_by_test_id("call-reply")).to_contain_text("finish")
    page.keyboard.press("Escape")
    # The calls no step shows (the refused attempt, the final answer's) open from the node.
    agent = page.locator("[data-testid=tree-node][data-kind=agent]")
    agent.get_by_role("button", name="Show other model calls").click()
    agent.locator("li.call.error").get_by_test_id("open-call").click()
    expect(call.locator("[data-fact='HTTP status']")).to_have_text("429")
    page.keyboard.press("Escape")

    # The refused attempt is a bar of its own on the timeline, and opens like any call.
    page.get_by_role("radio", name="Show the timeline").click()
    refused = page.locator("[data-testid=timeline-bar][data-kind=call].status-error")
    expect(refused).to_have_count(1)
    refused.click()
    expect(call.locator("[data-fact='HTTP status']")).to_have_text("429")
    expect(call.locator("[data-fact=attempt]")).to_have_text("1")
    expect(call.get_by_role("alert")).to_contain_text("429")
    expect(call.get_by_test_id("call-message").last).to_contain_text("capital of Italy")
    # Each attempt links to the others.
    call.get_by_role("button", name="Open attempt 2").click()
    expect(call.locator("[data-fact=attempt]")).to_have_text("2")
    expect(call.get_by_role("button", name="Open attempt 1, HTTP 429")).to_be_visible()


@pytest.fixture(scope="module")
def fleet_web_imported(frontend_build: Path, scripted: ScriptedLMServer,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`fleet web` on a store into which `fleet import rlm-log` read a reference log."""
    data_dir = tmp_path_factory.mktemp("fleet-data-imported")
    env = fleet_env(data_dir, scripted, FLEET_TOKEN=LOCAL_TOKEN)
    log = ROOT / "tests" / "data" / "rlm_logs" / "every_field.jsonl"
    imported = subprocess.run([str(fleet_command()), "import", "rlm-log", str(log)], env=env,
                              cwd=data_dir, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, (imported.stdout, imported.stderr)
    with running_fleet_web(data_dir, env) as base:
        yield base


def test_an_imported_reference_log_reads_like_our_own_turns(
        browser, fleet_web_imported: str) -> None:
    context = browser.new_context(base_url=fleet_web_imported,
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page)
        page.goto("/#/turns?q=secret")
        rows = page.get_by_test_id("turn-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("gpt-4o")
        rows.first.get_by_role("link").first.click()
        expect(page).to_have_url(re.compile(r"#/s/\w+/t/\w+$"))
        # Read-only: its turns show, no message box.
        expect(page.get_by_test_id("read-only")).to_contain_text("every_field.jsonl")
        expect(page.get_by_role("textbox", name="Message")).to_have_count(0)
        expect(page.get_by_test_id("turn")).to_have_count(2)

        rlm = page.locator("[data-testid=tree-node][data-kind=rlm]").first
        expect(rlm.get_by_test_id("iteration")).to_have_count(3)
        rlm.get_by_role("button", name="Open the root call of iteration 1").click()
        call = inspector(page)
        expect(call.locator("[data-fact=model]")).to_have_text("gpt-4o")
        messages = call.get_by_test_id("call-message")
        expect(messages.first).to_have_attribute("data-role", "system")
        expect(messages.first).to_contain_text("You are an RLM with a REPL.")
        expect(call.get_by_test_id("call-reply")).to_contain_text("Let me look.")
        page.keyboard.press("Escape")
        rlm.get_by_role("button", name="Show sub-LM calls").first.click()
        rlm.get_by_role("button", name=re.compile(r"Open the sub call \d+")).first.click()
        expect(call.get_by_test_id("call-message").last).to_contain_text("find the number in:")
        page.keyboard.press("Escape")

        page.get_by_role("radio", name="Show the timeline").click()
        timeline = page.get_by_test_id("timeline")
        expect(timeline.locator("[data-kind=iteration]")).to_have_count(3)
        expect(timeline.locator("[data-kind=call][data-critical=true]")).not_to_have_count(0)
        shot(page, "26-imported-log")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_import_a_reference_log_from_the_turns_view(page: Page) -> None:
    page.goto("/#/turns")
    chooser = page.get_by_test_id("import-log-input")
    bad = b'{"type": "metadata", "root_model": "gpt-4o", "max_iterations": 3}\nnot json\n'
    chooser.set_input_files(files=[{"name": "bad.jsonl", "mimeType": "application/json",
                                    "buffer": bad}])
    error = page.get_by_test_id("import-error")
    expect(error).to_contain_text("line 2")
    expect(page).to_have_url(re.compile(r"#/turns$"))

    log = ROOT / "tests" / "data" / "rlm_logs" / "every_field.jsonl"
    chooser.set_input_files(files=[{"name": "from-the-web.jsonl", "mimeType": "application/json",
                                    "buffer": log.read_bytes()}])
    expect(page).to_have_url(re.compile(r"#/s/\w+$"))
    expect(page.get_by_test_id("read-only")).to_contain_text("from-the-web.jsonl")
    expect(page.get_by_test_id("turn")).to_have_count(2)
    expect(last_turn(page)).to_contain_text("teal")
