"""Browser tests: the built web app served by a real `fleet web`, driven by Chromium.

One `fleet web` subprocess and one scripted LM server serve the whole module; each test sets the
script it needs and works in sessions of its own. Screenshots land in tests/e2e/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import LOCAL_TOKEN, sign_in

from fleet_rlm.testing import ScriptedLMServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/api/v1/health", timeout=5) as response:
        return json.load(response).get("status") == "ok"


@pytest.fixture(scope="session")
def frontend_build() -> Path:
    """The web app, built (or found up to date) by the same script developers run."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: the browser tests need Node.js 20.19+ to build the app")
    result = subprocess.run([str(ROOT / "scripts" / "build-frontend.sh")], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"scripts/build-frontend.sh failed ({result.returncode}):\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    index = ROOT / "src" / "fleet_rlm" / "server" / "static" / "index.html"
    assert index.is_file(), f"the build did not produce {index}"
    return index.parent


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedLMServer]:
    with ScriptedLMServer([]) as server:
        yield server


def fleet_command() -> Path:
    fleet = Path(sys.executable).parent / "fleet"
    return fleet if fleet.exists() else ROOT / ".venv" / "bin" / "fleet"


def fleet_env(data_dir: Path, scripted: ScriptedLMServer, **extra: str) -> dict[str, str]:
    """The environment of `fleet web` and of the CLI on the same data dir."""
    env = {
        **os.environ,
        "FLEET_DATA_DIR": str(data_dir),
        "FLEET_ROOT_MODEL": "openai/root",
        "FLEET_SUB_MODEL": "openai/sub",
        "FLEET_API_BASE": scripted.api_base,
        "FLEET_DELEGATE_CHARS": "1000",  # the test documents go to the recursive engine
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    for name in ("FLEET_API_KEY", "FLEET_AUTH", "FLEET_TOKEN", "FLEET_DATABASE_URL",
                 "FLEET_SANDBOX"):
        env.pop(name, None)
    return {**env, **extra}


@contextmanager
def running_fleet_web(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """`fleet web` on a free port until the block ends; its base URL."""
    port = free_port()
    log = (data_dir / "fleet-web.log").open("w")
    proc = subprocess.Popen([str(fleet_command()), "web", "--port", str(port)], cwd=data_dir,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if healthy(base):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail("fleet web did not start:\n"
                            + (data_dir / "fleet-web.log").read_text()[-4000:])
            time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def fleet_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of `fleet web`, where the command line (`fleet optimize`) works too."""
    return tmp_path_factory.mktemp("fleet-data")


@pytest.fixture(scope="session")
def fleet_web(frontend_build: Path, scripted: ScriptedLMServer, fleet_data: Path
              ) -> Iterator[str]:
    """`fleet web` on a free port, its models pointed at the scripted server; its token (the
    default FLEET_AUTH=local) is LOCAL_TOKEN."""
    data_dir = fleet_data
    with running_fleet_web(data_dir, fleet_env(data_dir, scripted,
                                               FLEET_TOKEN=LOCAL_TOKEN)) as base:
        yield base


@dataclass(frozen=True)
class TokenServer:
    base: str
    token: str


@pytest.fixture(scope="session")
def fleet_web_token(frontend_build: Path, scripted: ScriptedLMServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """`fleet web` with FLEET_AUTH=token, and a token of its admin user made with the CLI."""
    data_dir = tmp_path_factory.mktemp("fleet-data-token")
    env = fleet_env(data_dir, scripted, FLEET_AUTH="token")
    fleet = str(fleet_command())
    subprocess.run([fleet, "users", "add", "alice", "--admin"], env=env, cwd=data_dir,
                   check=True, capture_output=True, timeout=120)
    created = subprocess.run([fleet, "tokens", "create", "alice", "--name", "browser"], env=env,
                             cwd=data_dir, check=True, capture_output=True, text=True,
                             timeout=120)
    token = created.stdout.strip()
    assert token.startswith("fleet_"), (created.stdout, created.stderr)
    with running_fleet_web(data_dir, env) as base:
        yield TokenServer(base, token)


# Module scope: Playwright's sync API keeps an event loop running in the main thread while it
# is open, and every asyncio test that runs after it in the same session would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    for stale in ARTIFACTS.glob("FAILED-*.png"):
        stale.unlink()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, fleet_web: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh 1280×800 page on the app, light theme, signed in; JS errors fail the test."""
    context = browser.new_context(base_url=fleet_web, viewport={"width": 1280, "height": 800},
                                  color_scheme="light")
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
