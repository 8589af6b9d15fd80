"""The Workbench against `fleet web` with FLEET_AUTH=token: it asks for an API token, keeps it,
and sends it on every request and on the session's WebSocket."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LOCAL_TOKEN
from playwright.sync_api import Page, expect
from test_workbench import DOCUMENT, ask, attach, last_turn, script, shot

from fleet_rlm.testing import ScriptedLMServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ARTIFACTS = Path(__file__).parent / "artifacts"


def create_session(server: Any, title: str) -> str:  # server: conftest.TokenServer
    request = urllib.request.Request(
        f"{server.base}/api/v1/sessions", data=json.dumps({"title": title}).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["id"]


@pytest.fixture
def token_page(browser, fleet_web_token: Any,
               request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(base_url=fleet_web_token.base,
                                  viewport={"width": 1280, "height": 800}, color_scheme="light")
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_sign_in_with_a_token(token_page: Page, fleet_web_token: Any,
                              scripted: ScriptedLMServer) -> None:
    page = token_page
    create_session(fleet_web_token, "Shared notes")
    page.goto("/")
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("fleet tokens create")
    page.keyboard.press("Escape")  # nothing works without a token: it stays
    expect(dialog).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)  # no error banner behind it

    token = dialog.get_by_label("API token")
    token.fill("fleet_not-a-real-token")
    dialog.get_by_role("button", name="Sign in with this token").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "The server did not accept this token: the token is unknown or revoked.")
    shot(page, "21-sign-in")
    token.fill(fleet_web_token.token)
    token.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("link", name="Open session Shared notes")).to_be_visible()
    assert page.evaluate("localStorage.getItem('fleet.token')") == fleet_web_token.token

    # The socket carries the token too: a turn runs to its answer.
    scripted.set_rules(script())
    page.get_by_role("link", name="Open session Shared notes").click()
    attach(page, "big.txt", DOCUMENT)
    ask(page, "How many needles?")
    expect(last_turn(page)).to_have_attribute("data-status", "ok", timeout=60_000)
    expect(last_turn(page).locator("strong")).to_have_text("500 needles")
    shot(page, "22-signed-in")

    page.reload()  # kept in this browser
    expect(page.get_by_test_id("turn")).to_have_count(1)
    expect(dialog).to_be_hidden()

    page.get_by_role("button", name="Sign out (forget the API token)").click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("alert")).to_have_count(0)
    assert page.evaluate("localStorage.getItem('fleet.token')") is None


def test_a_revoked_token_is_asked_for_again(token_page: Page,
                                            fleet_web_token: Any) -> None:
    page = token_page
    create_session(fleet_web_token, "Second look")
    page.add_init_script("localStorage.setItem('fleet.token', 'fleet_revoked-or-unknown')")
    page.goto("/")
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog.get_by_role("alert")).to_have_text(
        re.compile(r"^Your saved token was not accepted: the token is unknown or revoked"))
    dialog.get_by_label("API token").fill(fleet_web_token.token)
    dialog.get_by_role("button", name="Sign in with this token").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("link", name="Open session Second look")).to_be_visible()


def test_the_address_fleet_web_prints_signs_the_browser_in(browser, fleet_web: str) -> None:
    context = browser.new_context(base_url=fleet_web, viewport={"width": 1280, "height": 800},
                                  color_scheme="light")
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/")  # no token: even on loopback the server asks for one
        dialog = page.get_by_role("dialog", name="Sign in")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Open the address it printed")
        expect(page.get_by_test_id("session-item")).to_have_count(0)

        page.goto(f"/?token={LOCAL_TOKEN}#/settings")
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("textbox", name="Root model")).to_have_value("openai/root")
        assert "token" not in page.url and page.url.endswith("/#/settings")
        assert page.evaluate("localStorage.getItem('fleet.token')") == LOCAL_TOKEN
        # Isolation is never switched off from the browser.
        expect(page.get_by_role("option", name=re.compile("^unsafe-local"))).to_be_disabled()
        page.reload()  # kept in this browser
        expect(page.get_by_role("textbox", name="Root model")).to_have_value("openai/root")
        expect(dialog).to_be_hidden()
    finally:
        context.close()
    assert not errors, errors
