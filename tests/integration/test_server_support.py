"""Shared pieces of the server tests (no tests here): scripted turns, the app in process, the app
on a real uvicorn, and WebSocket helpers."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from fleet_rlm.config import Settings
from fleet_rlm.server import create_app
from fleet_rlm.server.serving import uvicorn_config
from fleet_rlm.testing import AGENT_ANSWER, dspy_reply
from fleet_rlm.testing import dspy_agent_step as step

API = "/api/v1"
HOST = "http://127.0.0.1"  # the local-user server answers loopback Host names only
TOKEN = "local-test-token"  # the server's token (FLEET_AUTH=local) in settings_for
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _msg(text: str) -> str:
    return rf"\[\[ ## message ## \]\]\n{re.escape(text)}\n"


def _both(a: str, b: str) -> str:
    return rf"(?=.*{a})(?=.*{b})"


def quick(text: str, answer: str) -> list[dict]:
    """`text` is answered at once: one agent step (finish), one answer call."""
    return [
        {"model": "root", "match": _both(AGENT_ANSWER, _msg(text)),
         "reply": dspy_reply(reasoning="r", answer=answer)},
        {"model": "root", "match": _both("next_thought", _msg(text)),
         "reply": step("done", "finish")},
    ]


def slow(text: str, answer: str, steps: int, delay_ms: int) -> list[dict]:
    """`steps` python steps, each model call taking `delay_ms`, then finish and the answer."""
    rules = [{"model": "root", "match": _both(AGENT_ANSWER, _msg(text)),
              "reply": dspy_reply(reasoning="r", answer=answer)},
             {"model": "root", "match": _both(f"observation_{steps - 1}", _msg(text)),
              "reply": step("done", "finish"), "delay_ms": delay_ms}]
    for k in range(steps - 1, -1, -1):
        rules.append({"model": "root", "delay_ms": delay_ms,
                      "match": _both(f"observation_{k - 1}" if k else "next_thought", _msg(text)),
                      "reply": step(f"step {k}", "python", code=f"print({k})")})
    return rules


def asking(text: str, question: str, answer: str) -> list[dict]:
    """ask_user first; after the reply, finish and the answer."""
    return [
        {"model": "root", "match": _both(AGENT_ANSWER, _msg(text)),
         "reply": dspy_reply(reasoning="r", answer=answer)},
        {"model": "root", "match": _both("observation_0", _msg(text)),
         "reply": step("got it", "finish")},
        {"model": "root", "match": _both("next_thought", _msg(text)),
         "reply": step("ask", "ask_user", question=question)},
    ]


def settings_for(server: Any, data_dir: Path, **overrides: Any) -> Settings:
    values = {"root_model": "openai/root", "sub_model": "openai/sub", "data_dir": data_dir,
              "api_base": server.api_base if server else None, "token": TOKEN, **overrides}
    return Settings(**values)


@contextmanager
def app_client(settings: Settings, **headers: str) -> Iterator[TestClient]:
    """The app in process; with FLEET_AUTH=local every request carries the server's token."""
    if settings.auth == "local":
        settings = settings.model_copy(update={"token": settings.token or TOKEN})
        headers = {"Authorization": f"Bearer {settings.token}", **headers}
    with TestClient(create_app(settings), base_url=HOST, headers=headers) as client:
        yield client


def user_token(data_dir: Path, user: str, *add: str) -> str:
    """A new user of the data dir's store (`fleet users add USER *add`) and an API token."""
    from typer.testing import CliRunner

    from fleet_rlm.cli import app as cli_app

    env = {"FLEET_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    assert runner.invoke(cli_app, ["users", "add", user, *add], env=env).exit_code == 0
    created = runner.invoke(cli_app, ["tokens", "create", user], env=env)
    assert created.exit_code == 0, created.output
    match = re.search(r"fleet_\S+", created.output)
    assert match, created.output
    return match.group()


def ws_url(session_id: str, base: str = "ws://127.0.0.1", token: str | None = None) -> str:
    return f"{base}{API}/sessions/{session_id}/ws" + (f"?token={token}" if token else "")


def until_finished(receive, limit: int = 500) -> list[dict]:
    """Frames from `receive()` up to and including a turn_finished event."""
    frames = []
    while len(frames) < limit:
        frame = receive()
        frames.append(frame)
        if frame.get("type") == "turn_finished":
            return frames
    raise AssertionError(f"no turn_finished in {len(frames)} frames")


def events_of(frames: list[dict]) -> list[dict]:
    return [f for f in frames if "seq" in f]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uvicorn_server(settings: Settings) -> Iterator[str]:
    """The app on a real uvicorn in a thread; yields its http base URL."""
    port = free_port()
    config = uvicorn_config(create_app(settings), settings, "127.0.0.1", port,
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
