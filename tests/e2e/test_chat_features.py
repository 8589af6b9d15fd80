"""The Workbench's chat features in a real browser against a real `fleet web` and the scripted LM
server: what the first screen loads, copying, regenerating and editing a turn, the session's
models, sidebar actions, and files a turn's code makes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from test_workbench import ANSWER, api_get, ask, last_turn, new_session

from fleet_rlm.testing import AGENT_ANSWER, ScriptedLMServer, dspy_agent_step, dspy_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIRST_SCREEN_JS_BYTES = 320_000  # the app and React; Markdown and highlight.js come later


def answer_script(answer: str = ANSWER) -> list[dict]:
    return [
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="ok", answer=answer)},
        {"match": "next_thought", "model": "root", "reply": dspy_agent_step("done", "finish")},
    ]


def test_the_first_screen_loads_only_what_it_needs(page: Page, scripted: ScriptedLMServer
                                                   ) -> None:
    scripts: dict[str, int] = {}

    def on_response(response) -> None:
        if response.request.resource_type == "script":
            scripts[response.url.rsplit("/", 1)[-1]] = len(response.body())

    page.on("response", on_response)
    new_session(page)
    assert any(name.startswith("index-") for name in scripts), scripts
    assert not [name for name in scripts if re.match(r"(Markdown|Code|\w+Page)-", name)], scripts
    assert sum(scripts.values()) < FIRST_SCREEN_JS_BYTES, scripts
    scripted.set_rules(answer_script())
    ask(page, "count them")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(turn.locator("strong")).to_have_text("500 needles")  # Markdown, loaded when needed
    expect(turn.locator("pre code.hljs")).to_contain_text("context.count")
    assert any(name.startswith("Markdown-") for name in scripts), scripts


@pytest.mark.parametrize("doc_page", ["docs", "redoc"])
def test_api_docs_render_without_internet(browser, fleet_web: str, doc_page: str) -> None:
    context = browser.new_context(base_url=fleet_web)
    outside: list[str] = []

    def only_this_server(route) -> None:
        if route.request.url.startswith(fleet_web):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto(f"/api/v1/{doc_page}")
    expect(page.get_by_text("/api/v1/sessions/{session_id}/export").first).to_be_visible()
    context.close()
    assert not outside, outside


def test_copy_regenerate_and_edit_and_resend(page: Page, scripted: ScriptedLMServer,
                                             fleet_web: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=fleet_web)
    scripted.set_rules(answer_script())
    new_session(page)
    ask(page, "count them")
    first = page.get_by_test_id("turn").first
    expect(first).to_have_attribute("data-status", "ok", timeout=60_000)

    def clipboard() -> str:
        return page.evaluate("navigator.clipboard.readText()")

    first.get_by_role("button", name="Copy answer of turn 1").click()
    expect(first.get_by_role("button", name="Copy answer of turn 1")).to_have_attribute(
        "data-state", "copied")
    assert clipboard() == ANSWER
    first.locator(".markdown").get_by_role("button", name="Copy code").click()
    assert clipboard() == "context.count('needle')  # 500"
    first.get_by_role("button", name="Copy message of turn 1").click()
    assert clipboard() == "count them"

    # Regenerate: the same question again, as a new turn.
    first.get_by_role("button", name="Regenerate turn 1").click()
    turns = page.get_by_test_id("turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(1).locator(".bubble.user .bubble-text")).to_have_text("count them")
    expect(turns.nth(1)).to_have_attribute("data-status", "ok", timeout=60_000)

    # Edit and resend: the message comes back to the box, changed there, sent as a new turn.
    first.get_by_role("button", name="Edit the message of turn 1 and send it again").click()
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_have_value("count them")
    expect(box).to_be_focused()
    box.fill("count them twice")
    box.press("Enter")
    expect(turns).to_have_count(3)
    expect(turns.nth(2).locator(".bubble.user .bubble-text")).to_have_text("count them twice")
    expect(turns.nth(2)).to_have_attribute("data-status", "ok", timeout=60_000)


def test_a_sessions_own_models_with_test_connection(page: Page, scripted: ScriptedLMServer,
                                                    fleet_web: str) -> None:
    scripted.set_rules([
        {"match": "single word OK", "model": "other", "reply": "OK"},
        *[{**rule, "model": "other"} for rule in answer_script("from **other**")],
    ])
    session_id = new_session(page)
    page.get_by_test_id("model-button").click()
    dialog = page.get_by_role("dialog", name="Models of this session")
    expect(dialog.get_by_role("textbox", name="Root model of this session")).to_have_attribute(
        "placeholder", "openai/root")
    dialog.get_by_role("textbox", name="Root model of this session").fill("openai/other")
    dialog.get_by_role("textbox", name="Sub model of this session").fill("openai/other")
    dialog.get_by_role("button", name="Test connection to the models").click()
    expect(dialog.get_by_test_id("model-test-result")).to_contain_text("openai/other answered")
    dialog.get_by_role("button", name="Save the models of this session").click()
    expect(dialog).to_contain_text("Saved")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("model-button")).to_contain_text("other")
    assert api_get(fleet_web, f"/sessions/{session_id}")["root_model"] == "openai/other"
    ask(page, "who answers?")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(turn.locator("strong")).to_have_text("other")
    # A reload shows the session's models again.
    page.reload()
    expect(page.get_by_test_id("model-button")).to_contain_text("other")


def test_export_a_session_from_the_sidebar(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(answer_script())
    new_session(page)
    ask(page, "count them for the export")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    item = page.get_by_test_id("session-item").filter(has=page.locator('[aria-current="page"]'))
    with page.expect_download() as download:
        item.get_by_role("button", name=re.compile("^Export session .* as Markdown$")).click()
    exported = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.endswith(".md")
    assert "count them for the export" in exported and "500 needles" in exported
