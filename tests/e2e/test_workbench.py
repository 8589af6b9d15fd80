"""The Workbench in a real browser against a real `fleet web` and the scripted LM server.

The scripts: the agent delegates the attached document with rlm_query (a depth-1 RLM under the
agent); that RLM's first cell calls llm_query_batched (sub calls under the cell) and rlm_query
(a depth-2 RLM under the cell), then counts and submits.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BEARER, sign_in
from playwright.sync_api import Page, expect

from fleet_rlm.testing import AGENT_ANSWER, ScriptedLMServer, dspy_agent_step, dspy_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

STEP = r"\[\[ ## iteration ## \]\]\n{}/"
ROOT = r"Variable: `question`[\s\S]*"
CHILD = r"Variable: `query`[\s\S]*"
DOCUMENT = ("hay needle " * 500).encode()
SPLIT_AND_DELEGATE = (
    "parts = [context[:60], context[60:120]]\n"
    "counts = llm_query_batched(['Count needles in: ' + p for p in parts])\n"
    "print(counts)\n"
    "print(rlm_query('How many needles in this part?', context[:400]))"
)
ARTIFACTS = Path(__file__).parent / "artifacts"
ANSWER = "There are **500 needles**.\n\n```python\ncontext.count('needle')  # 500\n```"


def script(delay_ms: int = 0, first_cell: str = SPLIT_AND_DELEGATE, ask: bool = False
           ) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"match": "single word OK", "reply": "OK"},  # Settings → Test model
        {"match": CHILD + STEP.format(1), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning="Count directly.",
                             code="SUBMIT(answer=str(context.count('needle')))")},
        {"match": ROOT + STEP.format(1), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning="Split, ask sub-models, delegate a part.",
                             code=first_cell)},
        {"match": ROOT + STEP.format(2), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning="Now count everything.",
                             code="total = context.count('needle')\nprint(total)")},
        {"match": ROOT + STEP.format(3), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning="Done.", code="SUBMIT(answer=str(total))")},
        {"model": "sub", "reply": "2", "delay_ms": delay_ms},
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="Counted.", answer=ANSWER)},
    ]
    delegate = dspy_agent_step("The document is long: delegate.", "rlm_query",
                               question="How many needles?")
    if ask:
        rules += [
            {"match": "observation_1", "model": "root",
             "reply": dspy_agent_step("done", "finish")},
            {"match": "observation_0", "model": "root", "reply": delegate},
            {"match": "next_thought", "model": "root", "times": 1,
             "reply": dspy_agent_step("Which one?", "ask_user",
                                      question="Which document shall I read?",
                                      choices=["big.txt", "all of them"])},
        ]
    else:
        rules += [
            {"match": "observation_0", "model": "root",
             "reply": dspy_agent_step("done", "finish")},
            {"match": "next_thought", "model": "root", "delay_ms": delay_ms, "reply": delegate},
        ]
    return rules


def api_get(base: str, path: str) -> Any:
    request = urllib.request.Request(f"{base}/api/v1{path}", headers=BEARER)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def new_session(page: Page) -> str:
    page.goto("/")
    page.get_by_role("button", name="New session", exact=True).click()
    page.wait_for_url(re.compile(r"#/s/\w+"))
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    return page.url.rsplit("/", 1)[-1]


def attach(page: Page, name: str = "big.txt", data: bytes = DOCUMENT) -> None:
    page.get_by_test_id("file-input").set_input_files(
        files=[{"name": name, "mimeType": "text/plain", "buffer": data}])
    expect(page.get_by_test_id("attachment").filter(has_text=name)).to_be_visible()


def ask(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def last_turn(page: Page):
    return page.get_by_test_id("turn").last


def node(page: Page, kind: str, depth: int):
    return page.locator(f'[data-testid=tree-node][data-kind="{kind}"][data-depth="{depth}"]')


def test_ask_with_a_document_and_watch_the_tree(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script(delay_ms=300))
    new_session(page)
    attach(page)
    ask(page, "How many needles are in big.txt?")

    expect(page.get_by_role("button", name="Stop the running turn (Esc)")).to_be_visible()
    # The delegated RLM appears under the agent step that called it, while the turn runs…
    rlm = page.locator('[data-kind="agent"] [data-testid=agent-step] '
                       '[data-testid=tree-node][data-kind="rlm"][data-depth="1"]')
    expect(rlm).to_be_visible()
    # …and its child under the code cell that called rlm_query.
    child = rlm.locator('[data-testid=iteration] [data-kind="rlm"][data-depth="2"]')
    expect(child).to_be_visible()
    shot(page, "01-running")

    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(turn.locator("strong")).to_have_text("500 needles")
    expect(turn.locator("pre code.hljs")).to_contain_text("context.count")
    expect(turn).to_contain_text("big.txt")
    # The session is named after its first question.
    expect(page.get_by_role("link", name="Open session How many needles are in big.txt?")
           ).to_be_visible()
    expect(rlm).to_have_attribute("data-status", "ok")
    expect(child).to_have_attribute("data-status", "ok")
    expect(rlm).to_contain_text("3/20 it")
    expect(rlm.get_by_test_id("iteration")).to_have_count(4)  # its three and the child's one

    sub_calls = rlm.get_by_role("button", name="Show sub-LM calls")
    expect(sub_calls).to_contain_text("2 sub-LM calls")
    sub_calls.click()
    rlm.get_by_role("button", name=re.compile(r"Show call \d+ previews")).first.click()
    expect(rlm.locator("pre.preview").first).to_contain_text("Count needles in")

    collapse = child.get_by_role("button", name="Collapse RLM node at depth 2")
    collapse.click()
    expect(child.get_by_test_id("iteration")).to_have_count(0)
    child.get_by_role("button", name="Expand RLM node at depth 2").click()
    expect(child.get_by_test_id("iteration")).to_have_count(1)

    calls = page.get_by_role("meter", name="LM calls used")
    assert int(calls.get_attribute("aria-valuenow")) >= 8
    assert calls.get_attribute("aria-valuemax") == "200"
    shot(page, "02-finished")

    page.get_by_label("Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export session as Markdown").click()
    exported = Path(download.value.path()).read_text()
    assert "How many needles are in big.txt?" in exported and "500 needles" in exported
    # The menu closed after the download; Escape and a click outside close it too.
    menu = page.get_by_role("group", name="Export options")
    expect(menu).to_be_hidden()
    page.get_by_label("Export", exact=True).click()
    expect(menu).to_be_visible()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    page.get_by_label("Export", exact=True).click()
    expect(menu).to_be_visible()
    page.get_by_role("heading", name="Execution tree").click()
    expect(menu).to_be_hidden()

    # Replay: ← steps back through the recorded events, the tree as it was.
    page.get_by_role("heading", name="Execution tree").click()
    page.keyboard.press("ArrowLeft")
    position = page.get_by_test_id("replay-position")
    expect(position).to_contain_text(re.compile(r"step (\d+) / \1\b|step \d+ / \d+"))
    page.get_by_role("button", name="Replay from the start").click()
    expect(position).to_contain_text("step 1 /")
    expect(node(page, "rlm", 1)).to_have_count(0)
    for _ in range(12):
        page.keyboard.press("ArrowRight")
    expect(node(page, "rlm", 1)).to_have_count(1)
    shot(page, "03-replay")
    page.get_by_role("button", name="Leave replay").click()
    expect(position).to_contain_text("← to replay")

    # The attachment is a field of the turn, shown apart from its text, also as the server
    # lists the turn after a reload.
    for reload in (False, True):
        if reload:
            page.reload()
        user = last_turn(page).locator(".bubble.user")
        expect(user.locator(".bubble-text")).to_have_text("How many needles are in big.txt?")
        expect(user.locator(".attachment")).to_have_text("big.txt")


def test_a_turn_that_recovers_from_bad_replies_shows_its_answer_and_no_alert(
        page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules([
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="Known.", answer="Paris is the capital.")},
        {"match": "There is no tool `web_search`", "model": "root",
         "reply": dspy_agent_step("I know it.", "finish")},
        {"match": "Your reply could not be read", "model": "root",
         "reply": dspy_agent_step("Search.", "web_search", query="capital of France")},
        {"match": "next_thought", "model": "root", "reply": "It is Paris, of course."},
    ])
    new_session(page)
    ask(page, "What is the capital of France?")

    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(turn).to_contain_text("Paris is the capital.")
    expect(turn.get_by_role("alert")).to_have_count(0)  # what it recovered from is in the tree
    tree = page.locator('[data-testid=tree-node][data-kind="agent"]').last
    expect(tree.locator(".node-error")).to_contain_text("UnreadableReply")
    expect(tree.get_by_test_id("agent-step").first).to_contain_text("web_search")


def test_an_iteration_whose_reply_never_came_does_not_stay_thinking(
        page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules([
        {"match": ROOT + STEP.format(1), "model": "root", "reply": "Nothing I can format."},
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="It failed.", answer="The count failed.")},
        {"match": "observation_0", "model": "root",
         "reply": dspy_agent_step("It failed.", "finish")},
        {"match": "next_thought", "model": "root",
         "reply": dspy_agent_step("Delegate.", "rlm_query", question="How many needles?")},
    ])
    new_session(page)
    attach(page)
    ask(page, "How many needles?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    rlm = node(page, "rlm", 1)
    expect(rlm).to_have_attribute("data-status", "error")
    cell = rlm.get_by_test_id("iteration").first
    expect(cell).not_to_contain_text("thinking…")
    expect(cell.get_by_test_id("cell-failed")).to_contain_text("not written: UnreadableReply")


def long_run(iterations: int, delay_ms: int) -> list[dict[str, Any]]:
    """The agent delegates; the RLM prints 40 lines per iteration, then submits."""
    rules: list[dict[str, Any]] = [
        {"match": ROOT + STEP.format(i), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning=f"Part {i}.",
                             code=f"for k in range(40):\n    print('part {i}', k)")}
        for i in range(1, iterations)]
    rules += [
        {"match": ROOT + STEP.format(iterations), "model": "root", "delay_ms": delay_ms,
         "reply": dspy_reply(reasoning="Done.", code="SUBMIT(answer='all parts')")},
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="Done.", answer="Read every part.\n\n" + "line\n\n" * 30)},
        {"match": "observation_0", "model": "root", "reply": dspy_agent_step("done", "finish")},
        {"match": "next_thought", "model": "root",
         "reply": dspy_agent_step("Delegate.", "rlm_query", question="Read every part.")},
    ]
    return rules


def scrolled_to_bottom(page: Page, test_id: str) -> bool:
    return page.get_by_test_id(test_id).evaluate(
        "el => el.scrollHeight - el.scrollTop - el.clientHeight < 4")


def test_the_live_tree_follows_the_running_node_until_the_reader_scrolls_away(
        page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(long_run(8, delay_ms=700))
    new_session(page)
    attach(page)
    ask(page, "Read every part.")
    panel = page.get_by_test_id("tree-scroll")
    cells = node(page, "rlm", 1).get_by_test_id("iteration")
    expect(cells.nth(3)).to_be_visible()
    # The newest cell is in the panel's view: the panel scrolled down to it.
    expect(cells.last).to_be_in_viewport()
    assert panel.evaluate("el => el.scrollTop") > 0
    # The reader scrolls up: the panel stays there while cells keep coming.
    panel.hover()
    page.mouse.wheel(0, -5000)
    expect(panel).to_have_attribute("data-following", "false")
    seen = cells.count()
    expect(cells).not_to_have_count(seen, timeout=10_000)
    assert panel.evaluate("el => el.scrollTop") == 0
    page.get_by_role("button", name="Follow the running node").click()
    expect(panel).to_have_attribute("data-following", "true")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)


def test_a_session_opens_at_its_latest_message(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(long_run(1, delay_ms=0))
    new_session(page)
    attach(page)
    current = page.get_by_test_id("session-item").filter(has=page.locator('[aria-current="page"]'))
    for n in range(3):
        ask(page, f"Read every part, round {n}.")
        expect(page.get_by_test_id("turn").nth(n)).to_have_attribute("data-status", "ok",
                                                                     timeout=60_000)
        # The sidebar counts the session's turns as they come.
        turns = f"{n + 1} turn{'s' if n else ''}"
        expect(current.get_by_test_id("session-meta")).to_contain_text(turns)
    page.reload()
    expect(page.get_by_test_id("turn")).to_have_count(3)
    page.wait_for_function("() => { const el = document.querySelector('[data-testid=chat-scroll]');"
                           " return el.scrollHeight > el.clientHeight * 1.5; }")
    page.wait_for_timeout(300)
    assert scrolled_to_bottom(page, "chat-scroll")
    expect(page.get_by_test_id("turn").first.locator(".bubble.user")).not_to_be_in_viewport()
    # The sidebar tells sessions apart by when and how much.
    expect(current.get_by_test_id("session-meta")).to_have_text(
        re.compile(r"^\d\d:\d\d · 3 turns$"))


def test_a_selected_turn_has_its_own_address(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(long_run(1, delay_ms=0))
    session_id = new_session(page)
    attach(page)
    for n in range(2):
        ask(page, f"Read every part, pass {n}.")
        expect(page.get_by_test_id("turn").nth(n)).to_have_attribute("data-status", "ok",
                                                                     timeout=60_000)
    first = page.get_by_test_id("turn").first
    first_id = first.get_attribute("data-turn-id")
    first.get_by_role("button", name="Show turn 1 in the execution tree").click()
    page.wait_for_url(re.compile(rf"#/s/{session_id}/t/{first_id}$"))
    # The address opens that turn in the tree, not the latest.
    page.reload()
    expect(page.get_by_role("combobox", name="Turn shown in the tree")).to_have_value(first_id)
    expect(first.get_by_role("button", name="Show turn 1 in the execution tree")
           ).to_have_text("shown in tree")


def test_attach_by_drag_and_drop_and_by_paste(page: Page) -> None:
    new_session(page)
    page.evaluate("""() => {
        const files = new DataTransfer();
        files.items.add(new File(['hay needle '.repeat(200)], 'dropped.txt', {type: 'text/plain'}));
        const chat = document.querySelector('[aria-label=Chat]');
        chat.dispatchEvent(new DragEvent('dragover',
            {dataTransfer: files, bubbles: true, cancelable: true}));
    }""")
    expect(page.get_by_text("Drop files to attach them")).to_be_visible()
    shot(page, "15-drop-target")
    page.evaluate("""() => {
        const files = new DataTransfer();
        files.items.add(new File(['hay needle '.repeat(200)], 'dropped.txt', {type: 'text/plain'}));
        const chat = document.querySelector('[aria-label=Chat]');
        chat.dispatchEvent(new DragEvent('drop',
            {dataTransfer: files, bubbles: true, cancelable: true}));
        const clip = new DataTransfer();
        clip.items.add(new File(['pasted needle'], 'pasted.txt', {type: 'text/plain'}));
        document.querySelector('textarea[aria-label=Message]').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: clip, bubbles: true, cancelable: true}));
    }""")
    expect(page.get_by_text("Drop files to attach them")).to_be_hidden()
    for name in ("dropped.txt", "pasted.txt"):
        expect(page.get_by_test_id("attachment").filter(has_text=name)).to_be_visible()
    page.get_by_role("button", name="Remove attachment pasted.txt").click()
    expect(page.get_by_test_id("attachment")).to_have_count(1)
    # A refused upload is named once, by the server's own message.
    page.get_by_test_id("file-input").set_input_files(
        files=[{"name": "blob.bin", "mimeType": "application/octet-stream",
                "buffer": bytes(range(256)) * 4}])
    refused = page.get_by_role("form", name="Message composer").get_by_role("alert")
    expect(refused).to_contain_text("blob.bin looks like binary data")
    assert refused.inner_text().count("blob.bin") == 1, refused.inner_text()


def test_session_documents_strip_detach_delete_and_attach_again(
        page: Page, scripted: ScriptedLMServer, fleet_web: str) -> None:
    session_id = new_session(page)
    attach(page, "notes.txt", b"hay needle hay\n")
    strip = page.get_by_role("group", name="Documents in this session")
    notes = strip.get_by_test_id("session-document").filter(has_text="notes.txt")
    expect(notes).to_have_attribute("data-attached", "true")
    # After a reload the composer's chips are gone, but the session still shows its documents.
    page.reload()
    expect(notes).to_have_attribute("data-attached", "true")
    expect(strip).to_contain_text("1 of 1 document in view")
    # The same file again is the existing document, not a 409.
    attach(page, "notes.txt", b"hay needle hay\n")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(strip.get_by_test_id("session-document")).to_have_count(1)
    # × on the message's attachment detaches it for real: kept, out of the agent's view.
    page.get_by_role("button", name="Remove attachment notes.txt").click()
    expect(notes).to_have_attribute("data-attached", "false")
    [listed] = api_get(fleet_web, f"/sessions/{session_id}/documents")
    assert listed["attached"] is False
    # The agent is shown no documents: a prompt listing notes.txt matches no rule and fails.
    scripted.set_rules([
        {"match": AGENT_ANSWER, "model": "root",
         "reply": dspy_reply(reasoning="None.", answer="I see no documents.")},
        {"match": r"\[\[ ## documents ## \]\]\n\(none\)", "model": "root",
         "reply": dspy_agent_step("nothing to read", "finish")},
    ])
    ask(page, "What can you read here?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(last_turn(page)).to_contain_text("I see no documents.")
    shot(page, "05b-documents-strip")
    # Attached again, then deleted.
    strip.get_by_role("button", name="Attach notes.txt again").click()
    expect(notes).to_have_attribute("data-attached", "true")
    strip.get_by_role("button", name="Delete notes.txt").click()
    expect(strip).to_have_count(0)
    assert api_get(fleet_web, f"/sessions/{session_id}/documents") == []


def test_a_windows_1252_text_is_converted_and_says_so(page: Page, fleet_web: str) -> None:
    session_id = new_session(page)
    attach(page, "menu.txt", "Café crème — 3 €\n".encode("cp1252"))
    chip = page.get_by_test_id("session-document").filter(has_text="menu.txt")
    expect(chip).to_contain_text("converted from Windows-1252")
    [doc] = api_get(fleet_web, f"/sessions/{session_id}/documents")
    assert api_get(fleet_web, f"/documents/{doc['id']}")["text"] == "Café crème — 3 €\n"


def test_stop_a_running_turn(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script(first_cell="import time\nprint('working')\ntime.sleep(120)"))
    new_session(page)
    attach(page)
    ask(page, "Count the needles, slowly.")
    cell = node(page, "rlm", 1).get_by_test_id("iteration").first
    expect(cell).to_contain_text("time.sleep(120)")
    expect(cell).to_contain_text("running…")
    # A second message while the turn runs is refused with a clear word, and kept.
    ask(page, "And another thing")
    expect(page.get_by_test_id("composer-refusal")).to_contain_text("Busy: a turn is running")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("And another thing")
    page.keyboard.press("Escape")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(node(page, "rlm", 1)).to_have_attribute("data-status", "cancelled")
    # The cut-short cell reads as stopped, not as a crash; it had made no variables to lose.
    expect(cell.locator("pre.traceback")).to_have_text("Stopped: the cell was stopped")
    expect(cell).not_to_contain_text("SandboxDied")
    expect(page.get_by_role("button", name="Stop the running turn (Esc)")).to_have_count(0)
    expect(page.get_by_role("button", name="Send message")).to_be_visible()
    shot(page, "04-stopped")


def test_reload_mid_turn_resumes_the_tree(page: Page, scripted: ScriptedLMServer,
                                          fleet_web: str) -> None:
    scripted.set_rules(script(delay_ms=900))
    session_id = new_session(page)
    attach(page)
    ask(page, "How many needles?")
    expect(node(page, "rlm", 1)).to_be_visible()
    page.reload()
    # What happened before the reload comes from the store, the rest live, nothing twice.
    rlm = node(page, "rlm", 1)
    expect(rlm).to_have_count(1)
    expect(page.get_by_role("button", name="Stop the running turn (Esc)")).to_be_visible()
    shot(page, "05-reloaded-mid-turn")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(rlm).to_have_count(1)
    expect(node(page, "rlm", 2)).to_have_count(1)
    expect(rlm.locator("> .node-body > .cells > [data-testid=iteration]")).to_have_count(3)
    turns = api_get(fleet_web, f"/sessions/{session_id}/turns")
    events = api_get(fleet_web, f"/turns/{turns[-1]['id']}/events")["events"]
    expect(page.get_by_test_id("replay-position")).to_contain_text(
        f"{sum(e['type'] != 'answer_delta' for e in events)} steps")


def test_reconnect_resumes_from_the_last_seq(page: Page, scripted: ScriptedLMServer) -> None:
    page.add_init_script("""
      window.__sockets = []; window.__sent = [];
      const Native = window.WebSocket;
      window.WebSocket = class extends Native {
        constructor(...args) { super(...args); window.__sockets.push(this); }
        send(data) { window.__sent.push(JSON.parse(data)); super.send(data); }
      };
    """)
    scripted.set_rules(script(delay_ms=900))
    new_session(page)
    attach(page)
    ask(page, "How many needles?")
    expect(node(page, "rlm", 1)).to_be_visible()
    page.evaluate("window.__sockets.at(-1).close()")
    expect(page.get_by_test_id("banner-reconnecting")).to_be_visible()
    shot(page, "06-reconnecting")
    expect(page.get_by_test_id("banner-reconnecting")).to_have_count(0)
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    resumes = [f for f in page.evaluate("window.__sent") if f["type"] == "resume"]
    assert resumes and resumes[-1]["last_seq"] > 0, resumes
    expect(node(page, "rlm", 1)).to_have_count(1)


def test_ask_user_is_answered_inline(page: Page, scripted: ScriptedLMServer,
                                     fleet_web: str) -> None:
    scripted.set_rules(script(ask=True))
    session_id = new_session(page)
    attach(page)
    ask(page, "How many needles?")
    question = page.get_by_role("form", name="Question from the agent")
    expect(question).to_contain_text("Which document shall I read?")
    expect(last_turn(page)).to_have_attribute("data-status", "waiting")
    shot(page, "07-ask-user")
    # While the question waits the composer says what to do, rather than fail as busy.
    expect(page.get_by_test_id("composer-hint")).to_have_text(
        "Answer the question above or dismiss it.")
    expect(page.get_by_role("textbox", name="Message")).to_have_attribute(
        "placeholder", "Answer the question above or dismiss it")
    page.get_by_role("textbox", name="Message").fill("Another question")
    expect(page.get_by_role("button", name="Send message")).to_be_disabled()
    # The agent offered choices: they are buttons.
    question.get_by_role("group", name="Choices").get_by_role("button", name="big.txt").click()
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(node(page, "rlm", 1)).to_have_count(1)
    expect(page.get_by_test_id("agent-step").first).to_contain_text("big.txt")
    # One turn, one agent root; the question and the reply stay in the transcript.
    expect(page.locator('[data-testid=tree-node][data-kind="agent"]')).to_have_count(1)
    for reload in (False, True):
        if reload:
            page.reload()
        asked = last_turn(page).get_by_test_id("asked")
        expect(asked).to_contain_text("Which document shall I read?")
        expect(asked).to_contain_text("You replied: big.txt")
        expect(page.get_by_test_id("turn")).to_have_count(1)
    expect(page.get_by_test_id("composer-hint")).to_have_count(0)
    [turn] = api_get(fleet_web, f"/sessions/{session_id}/turns")
    assert turn["asked"] == [{"question": "Which document shall I read?", "reply": "big.txt"}]


def test_a_question_can_be_dismissed(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script(ask=True))
    new_session(page)
    ask(page, "How many needles?")
    question = page.get_by_role("form", name="Question from the agent")
    expect(question).to_be_visible()
    question.get_by_role("button", name="Dismiss the question and end the turn").click()
    expect(last_turn(page)).to_have_attribute("data-status", "cancelled")
    expect(question).to_have_count(0)
    # The question stays in the transcript, unanswered.
    asked = last_turn(page).get_by_test_id("asked")
    expect(asked).to_contain_text("Which document shall I read?")
    expect(asked).to_contain_text("Not answered (dismissed)")
    expect(page.get_by_role("button", name="Send message")).to_be_visible()


def test_feedback_on_a_finished_turn(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script())
    new_session(page)
    attach(page)
    ask(page, "How many needles?")
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "ok", timeout=60_000)
    feedback = turn.get_by_test_id("turn-feedback")
    expect(feedback.get_by_test_id("trace-id")).to_have_count(0)  # tracing is off here
    feedback.get_by_role("button", name="Good answer").click()
    feedback.get_by_role("textbox", name="Comment (optional)").fill("Counted right.")
    feedback.get_by_role("button", name="Send feedback").click()
    expect(feedback).to_contain_text("Thanks: your thumbs up is recorded on the turn")
    shot(page, "17-feedback-recorded")

    # A traced turn (as the server reports one with tracing on): its trace id can be copied,
    # and the feedback posted is the thumb and the comment.
    trace_id = "tr-0123456789abcdef0123456789abcdef"
    posted: list[dict] = []

    def traced(route) -> None:
        route.fulfill(json=[{**t, "trace_id": trace_id} for t in route.fetch().json()])

    def recorded(route) -> None:
        posted.append(route.request.post_data_json)
        turn_id = route.request.url.split("/")[-2]
        route.fulfill(status=201, json={"turn_id": turn_id, "trace_id": trace_id,
                                        "assessment_id": "a-1"})

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.route("**/api/v1/sessions/*/turns", traced)
    page.route("**/api/v1/turns/*/feedback", recorded)
    page.reload()
    feedback = last_turn(page).get_by_test_id("turn-feedback")
    expect(feedback.get_by_test_id("trace-id")).to_contain_text("MLflow trace tr-012345678…")
    feedback.get_by_role("button", name="Copy the MLflow trace id").click()
    expect(feedback.get_by_role("status")).to_have_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == trace_id
    feedback.get_by_role("button", name="Bad answer").click()
    expect(feedback.get_by_role("button", name="Bad answer")).to_have_attribute(
        "aria-pressed", "true")
    comment = feedback.get_by_role("textbox", name="Comment (optional)")
    comment.fill("Missed the second half.")
    feedback.get_by_role("textbox", name="Corrected answer (optional)").fill("42")
    shot(page, "18-feedback-comment")
    comment.press("Enter")
    expect(feedback).to_contain_text("Thanks: your thumbs down is recorded")
    assert posted == [{"thumbs_up": False, "comment": "Missed the second half.",
                       "corrected_answer": "42"}]
    expect(feedback.get_by_role("button", name="Good answer")).to_be_disabled()


def test_a_budget_for_the_message(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script())
    new_session(page)
    budget = page.get_by_role("button", name="Set a budget for your messages")
    budget.click()
    popover = page.get_by_role("dialog", name="Budget for your messages")
    calls = popover.get_by_role("spinbutton", name="Max LM calls")
    expect(calls).to_be_focused()
    expect(calls).to_have_attribute("placeholder", re.compile(r"^\d+$"))  # the server's limit
    # The limits `fleet run` takes: tokens and wall time too.
    for name in ("Max tokens", "Max seconds"):
        expect(popover.get_by_role("spinbutton", name=name)).to_have_attribute(
            "placeholder", re.compile(r"^\d+(\.\d+)?$"))
    popover.get_by_role("spinbutton", name="Max depth").fill("-1")
    popover.get_by_role("button", name="Close the budget").click()
    expect(popover).to_have_count(0)
    # The server checks the values: a bad one is named, and the message stays in the box.
    ask(page, "How many needles?")
    expect(page.get_by_test_id("banner-notice")).to_contain_text(
        "bad limits: max_depth: Input should be greater than or equal to 0")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("How many needles?")
    expect(page.get_by_test_id("turn")).to_have_count(0)

    page.get_by_test_id("budget-button").click()
    popover.get_by_role("spinbutton", name="Max depth").fill("")
    calls.fill("1")
    shot(page, "19-budget-popover")
    calls.press("Enter")
    expect(page.get_by_role("button", name="Budget for your messages: 1 call. Change it")
           ).to_be_visible()
    attach(page)
    page.get_by_role("button", name="Send message").click()
    turn = last_turn(page)
    expect(turn).to_have_attribute("data-status", "budget", timeout=60_000)
    # One call was the agent's step: nothing came of the run, and the card says so.
    expect(turn).to_contain_text("The budget ran out before any result.")
    meter = page.get_by_role("meter", name="LM calls used")
    expect(meter).to_have_attribute("aria-valuemax", "1")
    expect(meter).to_have_attribute("aria-valuenow", "1")
    expect(page.get_by_test_id("banner-notice")).to_have_count(0)
    shot(page, "20-budget-ran-out")


def test_a_budget_stop_shows_the_partial_result(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script(first_cell="print('half counted: 250')"))
    new_session(page)
    page.get_by_role("button", name="Set a budget for your messages").click()
    calls = page.get_by_role("spinbutton", name="Max LM calls")
    calls.fill("2")  # the agent's step and the run's first iteration
    calls.press("Enter")
    attach(page)
    ask(page, "How many needles?")
    turn = last_turn(page)
    for reload in (False, True):
        if reload:
            page.reload()
            turn = last_turn(page)
        expect(turn).to_have_attribute("data-status", "budget", timeout=60_000)
        expect(turn.locator(".bubble.assistant pre")).to_contain_text("half counted: 250")
        expect(turn).to_contain_text("The budget ran out; this is the partial result.")
        expect(turn.get_by_role("alert")).to_contain_text("budget exceeded: calls")
    shot(page, "20b-budget-partial-result")


def test_sessions_new_rename_search_archive_delete(page: Page) -> None:
    new_session(page)
    item = page.get_by_test_id("session-item").filter(has=page.locator('[aria-current="page"]'))
    item.get_by_role("button", name=re.compile("^Rename session")).click()
    title = page.get_by_role("textbox", name=re.compile("^New title for"))
    title.fill("Needle research")
    title.press("Enter")
    expect(page.get_by_role("link", name="Open session Needle research")).to_be_visible()
    new_session(page)
    page.keyboard.press("Control+k")
    search = page.get_by_role("searchbox", name=re.compile("Search sessions"))
    expect(search).to_be_focused()
    search.fill("needle res")
    expect(page.get_by_test_id("session-item")).to_have_count(1)
    shot(page, "08-search")
    page.get_by_role("button", name="Archive session Needle research").click()
    expect(page.get_by_test_id("session-item")).to_have_count(0)
    page.get_by_role("checkbox", name="Show archived sessions").check()
    archived = page.get_by_role("link", name=re.compile("Open session Needle research"))
    expect(archived).to_contain_text("archived")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete session Needle research").click()
    expect(page.get_by_test_id("session-item")).to_have_count(0)


def test_settings_test_buttons_show_the_servers_guidance(page: Page, scripted: ScriptedLMServer
                                                         ) -> None:
    scripted.set_rules(script())
    page.goto("/#/settings")
    expect(page.get_by_role("textbox", name="Root model")).to_have_value("openai/root")
    expect(page.get_by_role("textbox", name="API key")).to_have_value("")
    page.get_by_role("button", name="Test model").click()
    check = page.get_by_test_id("check-model")
    expect(check).to_contain_text("Works")
    expect(check).to_contain_text("openai/root answered")
    page.get_by_role("button", name="Test sandbox").click()
    sandbox_check = page.get_by_test_id("check-sandbox")
    expect(sandbox_check).to_contain_text("print(1)")
    # The backend's health checks, as `fleet doctor` prints them.
    expect(sandbox_check.locator("li[data-check=runtime]")).to_contain_text("✓")
    expect(sandbox_check.locator("li[data-check=runtime]")).to_contain_text("sandbox works")
    expect(sandbox_check.locator("li[data-check=seccomp]")).to_contain_text("user namespaces")
    # Unsaved values are what the test uses: a dead endpoint gets the server's advice.
    page.get_by_role("textbox", name="API base").fill("http://127.0.0.1:9/v1")
    page.get_by_role("button", name="Test model").click()
    expect(check).to_contain_text("Problem")
    expect(check).to_contain_text("api_base")
    shot(page, "09-settings")
    page.get_by_role("button", name="Discard changes").click()
    page.get_by_role("spinbutton", name="LM calls per turn").fill("150")
    page.get_by_role("textbox", name="API key").fill("sk-test-123")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    expect(page.get_by_role("textbox", name="API key")).to_have_attribute(
        "placeholder", re.compile("set"))
    page.reload()
    expect(page.get_by_role("spinbutton", name="LM calls per turn")).to_have_value("150")
    expect(page.get_by_role("textbox", name="API key")).to_have_value("")


def test_documents_page_browses_previews_and_deletes(page: Page) -> None:
    new_session(page)
    attach(page, "notes.md", b"# Notes\n\nneedle one\n")
    page.get_by_role("button", name="Detach notes.md: keep it, hide it from the agent").click()
    expect(page.get_by_test_id("session-document").filter(has_text="notes.md")
           ).to_have_attribute("data-attached", "false")
    page.get_by_role("link", name="Documents").click()
    row = page.get_by_test_id("document-row").filter(has_text="notes.md")
    expect(row).to_be_visible()
    expect(row).to_contain_text("detached")
    row.get_by_role("button", name="Preview document notes.md").click()
    expect(page.get_by_test_id("preview")).to_contain_text("needle one")
    page.get_by_label("Choose files for the workspace").set_input_files(
        files=[{"name": "data.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}])
    entry = page.get_by_test_id("workspace-entry").filter(has_text="data.csv")
    expect(entry).to_be_visible()
    # The service's own folder cannot be deleted from here; the others can.
    entries = page.get_by_test_id("workspace-entry")
    expect(entries.filter(has_text="meta/")).to_contain_text("kept by the service")
    expect(page.get_by_role("button", name="Delete folder meta")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete folder memory")).to_be_visible()
    entry.get_by_role("button", name="Preview file data.csv").click()
    expect(page.get_by_test_id("preview")).to_contain_text("a,b")
    shot(page, "10-documents")
    page.once("dialog", lambda d: d.accept())
    entry.get_by_role("button", name="Delete file data.csv").click()
    expect(entry).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete document notes.md").click()
    expect(row).to_have_count(0)


def test_turns_and_usage(page: Page, scripted: ScriptedLMServer) -> None:
    scripted.set_rules(script())
    new_session(page)
    attach(page)
    ask(page, "How many needles?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    ask(page, "And how many in the first half?")
    expect(page.get_by_test_id("turn")).to_have_count(2)
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    # The tree follows the new turn; an older one can be picked from the list or the chat.
    picker = page.get_by_role("combobox", name="Turn shown in the tree")
    expect(picker.locator("option:checked")).to_contain_text("Turn 2")
    page.get_by_role("button", name="Show turn 1 in the execution tree").click()
    expect(picker.locator("option:checked")).to_contain_text("Turn 1")
    expect(page.get_by_test_id("turn").first).to_contain_text("shown in tree")
    picker.select_option(index=1)
    expect(last_turn(page)).to_contain_text("shown in tree")
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("img", name="Tokens per session")).to_be_visible()
    rows = page.get_by_role("table", name="Usage per session").locator("tbody tr")
    expect(rows).not_to_have_count(0)
    expect(rows.first.locator("td").last).to_have_text("$ n/a")  # the scripted models: no price
    page.get_by_role("radio", name="Per day").click()
    expect(page.get_by_role("img", name="Tokens per day")).to_be_visible()
    shot(page, "11-usage")
    for name in ("Tokens per day", "Tokens per session"):
        if name == "Tokens per session":
            page.get_by_role("radio", name="Per session").click()
        chart = page.get_by_role("img", name=name)
        # Every label lies within the chart: none is clipped at its edges.
        clipped = chart.evaluate("""svg => { const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text')].map(t => [t.textContent,
                t.getBoundingClientRect()]).filter(([, r]) => r.left < box.left - 0.5
                || r.right > box.right + 0.5 || r.top < box.top - 0.5
                || r.bottom > box.bottom + 0.5).map(([t]) => t); }""")
        assert clipped == [], clipped


def test_dark_mode_help_and_narrow_window(page: Page, browser, fleet_web: str,
                                          scripted: ScriptedLMServer) -> None:
    context = browser.new_context(base_url=fleet_web, viewport={"width": 1280, "height": 800},
                                  color_scheme="dark")
    dark = context.new_page()
    try:
        sign_in(dark)
        new_session(dark)
        html = dark.locator("html")
        expect(html).to_have_attribute("data-theme", "dark")
        background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 18, 22)", background
        dark.evaluate("document.activeElement.blur()")  # "?" in the message box is just text
        dark.keyboard.press("?")
        dialog = dark.get_by_role("dialog", name="Keyboard shortcuts")
        expect(dialog).to_contain_text("Stop the running turn")
        expect(dialog).to_contain_text("Replay a finished turn")
        shot(dark, "12-dark-help")
        dark.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        toggle = dark.get_by_test_id("theme-toggle")
        toggle.click()  # system → light
        expect(html).to_have_attribute("data-theme", "light")
        toggle.click()  # light → dark
        expect(html).to_have_attribute("data-theme", "dark")
        dark.reload()
        expect(html).to_have_attribute("data-theme", "dark")
    finally:
        context.close()

    scripted.set_rules(script())
    page.set_viewport_size({"width": 600, "height": 900})
    page.goto("/")
    page.get_by_role("button", name="Start a new session").click()
    attach(page)
    ask(page, "How many needles?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    shot(page, "13-narrow-chat")
    expect(page.get_by_role("navigation", name="Sessions and pages")).not_to_be_in_viewport()
    page.get_by_role("button", name="Open the menu").click()
    expect(page.get_by_role("navigation", name="Sessions and pages")).to_be_in_viewport()
    page.get_by_role("button", name="Close the menu").click()
    page.get_by_role("tab", name="Show execution tree").click()
    expect(page.get_by_role("region", name="Execution tree")).to_be_visible()
    expect(page.get_by_role("region", name="Chat")).to_be_hidden()
    expect(node(page, "rlm", 1)).to_be_visible()
    shot(page, "14-narrow-tree")

    # A phone-sized window: the brand and the composer fit, nothing scrolls sideways.
    page.set_viewport_size({"width": 360, "height": 740})
    page.get_by_role("tab", name="Show chat").click()
    shot(page, "14b-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for control in (page.get_by_test_id("brand"),
                    page.get_by_role("textbox", name="Message"),
                    page.get_by_role("button", name="Send message"),
                    page.get_by_role("button", name="Attach documents"),
                    page.get_by_test_id("budget-button")):
        box = control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    brand = page.get_by_test_id("brand").bounding_box()
    assert brand is not None and brand["height"] < 30, f"the brand wraps: {brand}"
    message = page.get_by_role("textbox", name="Message").bounding_box()
    assert message is not None and message["width"] >= 150, f"no room to write: {message}"


def test_banner_when_no_model_key_or_endpoint_is_configured(page: Page) -> None:
    new_session(page)
    expect(page.get_by_test_id("banner-model")).to_have_count(0)  # api_base is set here

    def unconfigured(route) -> None:
        settings = route.fetch().json()
        assert settings["model_ready"] is True
        route.fulfill(json={**settings, "model_ready": False, "api_base": None,
                            "provider_keys": ["OPENAI_API_KEY"]})

    page.route("**/api/v1/settings", unconfigured)
    page.reload()
    banner = page.get_by_test_id("banner-model")
    expect(banner).to_contain_text("No API key or endpoint is set for openai/root, and the "
                                   "server has no OPENAI_API_KEY in its environment.")
    shot(page, "16-model-banner")
    banner.get_by_role("link", name="Open Settings").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()


def test_every_control_has_an_accessible_name(page: Page) -> None:
    new_session(page)
    for path in ("", "#/documents", "#/settings", "#/usage", "#/turns"):
        if path:
            page.goto("/" + path)
            page.wait_for_load_state("networkidle")
        unnamed = page.evaluate("""() => [...document.querySelectorAll(
              'button, input:not([type=hidden]), select, textarea, [role=tab], [role=radio]')]
            .filter(el => !el.closest('[hidden]') && !el.hidden)
            .filter(el => !(el.getAttribute('aria-label') || el.labels?.length
                            || el.getAttribute('aria-labelledby')))
            .map(el => el.outerHTML.slice(0, 120))""")
        assert unnamed == [], f"{path or 'workbench'}: {unnamed}"
