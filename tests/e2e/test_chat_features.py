"""The Workbench's chat features in a real browser against a real `fleet web` and the scripted LM
server: what the first screen loads, copying, regenerating and editing a turn, the session's
models, sidebar actions, and files a turn's code makes.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from test_workbench import ANSWER, ask, last_turn, new_session

from fleet_rlm.testing import AGENT_ANSWER, ScriptedLMServer, dspy_agent_step, dspy_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIRST_SCREEN_JS_BYTES = 320_000  # the app and React; Markdown and highlight.js come later


def answer_script(answer: str = ANSWER) -> list[dict]:
    return [
        {"match": AGENT_ANSWER, "model": "root", "reply": dspy_reply(reasoning="ok", answer=answer)},
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
