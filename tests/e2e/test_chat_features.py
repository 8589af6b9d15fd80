"""The Workbench's chat features in a real browser against a real `fleet web` and the scripted LM
server: what the first screen loads, copying, regenerating and editing a turn, the session's
models, sidebar actions, and files a turn's code makes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from test_workbench import ANSWER, api_get, ask, last_turn, new_session, shot

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


PLOT_CODE = """import os, struct, zlib
os.makedirs('artifacts', exist_ok=True)
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
rows = b''.join(b'\\x00' + b'\\xff\\x00\\x00' * 4 for _ in range(4))
png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 4, 4, 8, 2, 0, 0, 0))
       + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
open('artifacts/dot.png', 'wb').write(png)
open('artifacts/chart.svg', 'w').write(
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="parent.pwned=1">'
    '<script>parent.pwned = 2; window.top.pwned = 3;</script>'
    '<rect width="40" height="20" fill="blue"/></svg>')
open('artifacts/counts.csv', 'w').write('word,count\\nneedle,500\\n"hay, dry",5000\\n')
open('artifacts/notes.md', 'w').write('# Findings\\n\\n*500* needles.\\n')
print('wrote four files')
"""


def test_files_the_code_writes_show_in_the_tree_and_the_answer(page: Page,
                                                               scripted: ScriptedLMServer
                                                               ) -> None:
    scripted.set_rules([
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="ok", answer="Plotted: see the files.")},
        {"match": "observation_0", "model": "root", "reply": dspy_agent_step("done", "finish")},
        {"match": "next_thought", "model": "root",
         "reply": dspy_agent_step("Plot it.", "python", code=PLOT_CODE)},
    ])
    new_session(page)
    ask(page, "plot the counts")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    step = page.locator('[data-testid=agent-step][aria-label="Agent step python"]')
    for where in (step, turn):
        expect(where.get_by_test_id("artifact")).to_have_count(4)
        assert [a.get_attribute("data-path") for a in where.get_by_test_id("artifact").all()] == [
            "artifacts/dot.png", "artifacts/chart.svg", "artifacts/counts.csv",
            "artifacts/notes.md"]  # in the order written
        image = where.locator('[data-path="artifacts/dot.png"] img')
        expect(image).to_have_attribute("alt", "artifacts/dot.png")
        page.wait_for_function("img => img.complete && img.naturalWidth === 4",
                               arg=image.element_handle())
        svg = where.locator('[data-path="artifacts/chart.svg"] img')
        assert svg.get_attribute("src").startswith("blob:")
        page.wait_for_function("img => img.complete && img.naturalWidth === 40",
                               arg=svg.element_handle())
        table = where.locator('[data-path="artifacts/counts.csv"] table')
        expect(table.locator("th")).to_have_text(["word", "count"])
        expect(table.locator("tbody tr").nth(1).locator("td").first).to_have_text("hay, dry")
        expect(where.locator('[data-path="artifacts/notes.md"] h1')).to_have_text("Findings")
    # The SVG was drawn as an image: its script and handlers never ran, and it is nowhere in
    # the page as markup.
    assert page.evaluate("window.pwned") is None
    assert page.locator("svg rect[fill=blue]").count() == 0
    shot(page, "10-artifacts")

    with page.expect_download() as download:
        turn.get_by_role("button", name="Download artifacts/dot.png").click()
    assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")
    assert download.value.suggested_filename == "dot.png"
