"""`fleet serve-mcp` as a real subprocess, driven by the MCP SDK's own client over stdio and over
streamable HTTP, against the scripted LM server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fleet_rlm.testing import AGENT_ANSWER, dspy_agent_step, dspy_reply

pytest.importorskip("mcp")
import httpx2  # noqa: E402 - comes with the mcp extra
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = pytest.mark.slow

FLEET = str(Path(sys.executable).parent / "fleet")
TOOLS = {"rlm_query", "chat", "list_sessions", "get_turn"}


RULES = [
    # rlm_query: the REPL shows what the context became.
    {"match": r"iteration ## \]\]\n1/", "model": "root", "times": 1,
     "reply": dspy_reply(reasoning="look", code="print(type(context).__name__)\n"
                         "SUBMIT(answer=','.join(f'{k}={len(v)}' for k, v in "
                         "sorted(context.items())))")},
    # chat: the agent asks which colour, then answers.
    {"match": AGENT_ANSWER, "model": "root",
     "reply": dspy_reply(reasoning="r", answer="Blue it is.")},
    {"match": "observation_0", "model": "root", "reply": dspy_agent_step("done", "finish")},
    {"match": "next_thought", "model": "root", "times": 1,
     "reply": dspy_agent_step("unclear", "ask_user", question="Which colour?")},
]


def server_env(tmp_path: Path, api_base: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "MLFLOW_"))}
    env["FLEET_ALLOW_UNPRICED_MODELS"] = "true"  # the scripted models have no price
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), FLEET_ROOT_MODEL="openai/root",
               FLEET_SUB_MODEL="openai/sub", FLEET_API_BASE=api_base, FLEET_API_KEY="test",
               FLEET_EXTRACT_MAX_TEXT_MB="1", **extra)
    return env


async def exercise(client: Client, tmp_path: Path) -> None:
    """Call every tool once and check what comes back."""
    assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

    (tmp_path / "notes.md").write_text("# Notes\n\nsome notes")
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    result = await client.call_tool(
        "rlm_query", {"question": "sizes?", "context": "twelve chars",
                      "paths": [str(tmp_path / "notes.md")], "max_calls": 5},
        progress_callback=on_progress)
    assert not result.is_error, result.content
    answer = result.structured_content
    assert answer["answer"] == "context=12,notes.md=19" and answer["status"] == "ok"
    assert answer["usage"]["calls"] == 1 and answer["usage"]["limits"]["max_calls"] == 5
    kinds = [message.split(" ", 1)[0] for _, message in progress]
    assert kinds == ["rlm_started", "lm_call", "rlm_iteration", "code_output", "rlm_finished"]
    assert progress[3][1] == "code_output (depth 0) dict"
    assert [value for value, _ in progress] == sorted(value for value, _ in progress)

    progress.clear()
    first = (await client.call_tool("chat", {"message": "Pick a colour"},
                                    progress_callback=on_progress)).structured_content
    assert first["status"] == "waiting" and first["question"] == "Which colour?"
    assert "ask_user (depth 0) Which colour?" in [message for _, message in progress]
    second = (await client.call_tool("chat", {"message": "blue",
                                              "session_id": first["session_id"]})
              ).structured_content
    assert second["turn_id"] == first["turn_id"]  # the reply resumed the waiting turn
    assert second["status"] == "ok" and second["answer"] == "Blue it is."

    sessions = (await client.call_tool("list_sessions", {})).structured_content["result"]
    assert [(s["id"], s["title"]) for s in sessions] == [(first["session_id"], "Pick a colour")]

    turn = json.loads((await client.call_tool(
        "get_turn", {"turn_id": first["turn_id"]})).content[0].text)["turn"]
    assert turn["status"] == "ok" and turn["answer"] == "Blue it is."
    assert [e["type"] for e in turn["events"]][-1] == "turn_finished"
    markdown = (await client.call_tool(
        "get_turn", {"turn_id": first["turn_id"], "format": "markdown"})).content[0].text
    assert markdown.startswith("# Turn 1 — ok")
    assert "Asked the user: **Which colour?**" in markdown

    missing = await client.call_tool("get_turn", {"turn_id": "nope"})
    assert missing.is_error and "no turn with id 'nope'" in missing.content[0].text
    unknown = await client.call_tool("chat", {"message": "hi", "session_id": "nope"})
    assert unknown.is_error and "no session with id 'nope'" in unknown.content[0].text
    bad_file = await client.call_tool("rlm_query", {"question": "q",
                                                    "paths": [str(tmp_path / "no-such")]})
    assert bad_file.is_error and f"no such file: {tmp_path / 'no-such'}" in bad_file.content[0].text
    await host_files_are_refused(client, tmp_path)


async def host_files_are_refused(client: Client, root: Path) -> None:
    """Files outside the root, links leading out of it and other than regular files: refused,
    saying why, and nothing of them reaches the model."""
    (root / "shadow-link").symlink_to("/etc/shadow")
    (root / "escape").symlink_to("/etc")
    os.mkfifo(root / "pipe")
    for path in ["/etc/shadow", "/etc/passwd", str(root / "shadow-link"),
                 str(root / "escape" / "passwd"), f"{root}/../../../etc/passwd",
                 "../../../../../../etc/passwd", str(root / "pipe")]:
        refused = await client.call_tool("rlm_query", {"question": "q", "paths": [path]})
        assert refused.is_error, path
        message = refused.content[0].text
        assert f"refused to read {path}: " in message, message
        assert str(root) in message  # the roots it may read
    assert "not a regular file" in message
    # Files under the roots are parsed as uploads are: in the bounded parser process, whose
    # text cap (1 MB in these tests) is what turns this one away.
    (root / "long.txt").write_text("a line of text\n" * 100_000)
    over = await client.call_tool("rlm_query", {"question": "q", "paths": ["long.txt"]})
    assert over.is_error and "(FLEET_EXTRACT_MAX_TEXT_MB)" in over.content[0].text, over
    too_many = await client.call_tool("rlm_query", {"question": "q", "max_calls": 10**9})
    assert too_many.is_error and "max_calls: " in too_many.content[0].text
    assert "above the server's limit of 200" in too_many.content[0].text


async def test_stdio(scripted_lm, tmp_path):
    server = scripted_lm(RULES)
    params = StdioServerParameters(command=FLEET, args=["serve-mcp", "--transport", "stdio"],
                                   env=server_env(tmp_path, server.api_base), cwd=tmp_path)
    async with Client(params, read_timeout_seconds=120) as client:
        await exercise(client, tmp_path)
    server.verify()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http(tmp_path: Path, api_base: str, host: str, **env: str
               ) -> tuple[subprocess.Popen, str, str]:
    """`fleet serve-mcp --transport http`: the process, its URL and the token line it printed."""
    port = free_port()
    process = subprocess.Popen(
        [FLEET, "serve-mcp", "--transport", "http", "--host", host, "--port", str(port)],
        env=server_env(tmp_path, api_base, **env), cwd=tmp_path, text=True,
        stderr=subprocess.PIPE)
    printed = ""
    while "rlm_query reads" not in printed:
        line = process.stderr.readline()
        assert line, f"the MCP server exited: {printed}"
        printed += line
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}/mcp", printed
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError("the MCP server did not start")


@pytest.fixture
def http_servers() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "test", "version": "0"}}}
ACCEPT = {"accept": "application/json, text/event-stream"}


async def refused_without(url: str, token: str) -> None:
    async with httpx2.AsyncClient() as http:
        for auth in ({}, {"authorization": "Bearer wrong"}, {"authorization": token}):
            response = await http.post(url, json=INITIALIZE, headers={**ACCEPT, **auth})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"


@asynccontextmanager
async def http_client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"},
                           timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_http_on_loopback_wants_the_token_it_printed(scripted_lm, tmp_path, http_servers):
    server = scripted_lm(RULES)
    process, url, printed = start_http(tmp_path, server.api_base, "127.0.0.1",
                                       FLEET_MCP_ROOTS=json.dumps([str(tmp_path)]))
    http_servers.append(process)
    token = re.search(r"token \(Authorization: Bearer \.\.\.\): (\S+)", printed).group(1)
    await refused_without(url, token)
    async with http_client(url, token) as client:
        await exercise(client, tmp_path)
    server.verify()


async def test_http_with_a_token_wants_it_on_every_request(scripted_lm, tmp_path, http_servers):
    server = scripted_lm(RULES)
    # Any address may be bound; the test reaches it over loopback.
    process, url, printed = start_http(tmp_path, server.api_base, "0.0.0.0",
                                       FLEET_MCP_TOKEN="s3cret",
                                       FLEET_MCP_ROOTS=json.dumps([str(tmp_path)]))
    http_servers.append(process)
    assert "s3cret" not in printed
    await refused_without(url, "s3cret")
    async with http_client(url, "s3cret") as client:
        await exercise(client, tmp_path)
    server.verify()


def _fleet_cli(tmp_path: Path, *args: str) -> str:
    done = subprocess.run([FLEET, *args], env=server_env(tmp_path, "http://127.0.0.1:9"),
                          text=True, capture_output=True, timeout=120, check=True)
    return done.stdout


async def test_http_tools_act_as_the_tokens_user_within_its_tenant(scripted_lm, tmp_path,
                                                                   http_servers):
    server = scripted_lm(RULES)
    for user in ("alice", "bob"):
        _fleet_cli(tmp_path, "users", "add", user)
    alice, bob = (re.search(r"fleet_\S+", _fleet_cli(tmp_path, "tokens", "create", u)).group()
                  for u in ("alice", "bob"))
    (tmp_path / "notes.md").write_text("private notes")
    process, url, _ = start_http(tmp_path, server.api_base, "127.0.0.1")
    http_servers.append(process)
    async with http_client(url, alice) as client:
        first = (await client.call_tool("chat", {"message": "Pick a colour"})
                 ).structured_content
        assert first["status"] == "waiting"
        mine = (await client.call_tool("list_sessions", {})).structured_content["result"]
        assert [s["id"] for s in mine] == [first["session_id"]]
        # No roots over HTTP unless configured: no file of this machine is read.
        refused = await client.call_tool("rlm_query", {"question": "q",
                                                       "paths": [str(tmp_path / "notes.md")]})
        assert refused.is_error and "this server reads no files" in refused.content[0].text
    async with http_client(url, bob) as client:
        assert (await client.call_tool("list_sessions", {})).structured_content["result"] == []
        seen = await client.call_tool("get_turn", {"turn_id": first["turn_id"]})
        assert seen.is_error and f"no turn with id '{first['turn_id']}'" in seen.content[0].text
        # Nor may bob write into alice's session, waiting turn or not.
        wrote = await client.call_tool("chat", {"message": "red",
                                                "session_id": first["session_id"]})
        assert wrote.is_error and "no session with id" in wrote.content[0].text
    async with http_client(url, alice) as client:
        turn = json.loads((await client.call_tool(
            "get_turn", {"turn_id": first["turn_id"]})).content[0].text)["turn"]
        assert turn["status"] == "waiting"  # bob's "red" never reached it

    token_id = re.search(r"^(\w+)\s+user", _fleet_cli(tmp_path, "tokens", "list", "bob"),
                         re.M).group(1)
    _fleet_cli(tmp_path, "tokens", "revoke", token_id)
    await refused_without(url, bob)


def test_roots_that_are_no_directories_stop_the_start(tmp_path):
    done = subprocess.run(
        [FLEET, "serve-mcp", "--transport", "http", "--port", str(free_port())],
        env=server_env(tmp_path, "http://127.0.0.1:9",
                       FLEET_MCP_ROOTS=json.dumps([str(tmp_path / "no-such")])),
        text=True, capture_output=True, timeout=60)
    assert done.returncode == 1
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert f"FLEET_MCP_ROOTS: the root {tmp_path / 'no-such'} is not a directory" in said


def test_a_missing_extra_names_the_install_command(monkeypatch):
    from fleet_rlm.mcp import import_mcp

    monkeypatch.setitem(sys.modules, "mcp.server", None)
    with pytest.raises(ImportError, match=r"pip install 'fleet-rlm\[mcp\]'"):
        import_mcp()


async def test_rlm_query_runs_the_callers_promoted_engine(scripted_lm, tmp_path):
    from fleet_rlm.config import Settings
    from fleet_rlm.optimize.targets import baseline
    from fleet_rlm.store import Store

    rule = "Promoted: submit the word promoted."
    release, instructions = baseline(Settings(), "rlm")
    async with Store(None, tmp_path / "data") as store:
        await store.prepare()
        version = await store.programs.add(
            "local", "rlm", dataset="d", metric="exact", release=release,
            baseline=instructions, instructions={**instructions, "generate_action": rule},
            score_before=0.0, score_after=1.0, stopped=None, detail={})
        await store.programs.promote("local", "rlm", version.id, "test")
    server = scripted_lm([{"match": re.escape(rule), "model": "root",
                           "reply": dspy_reply(reasoning="r", code="SUBMIT(answer='promoted')")}])
    params = StdioServerParameters(command=FLEET, args=["serve-mcp", "--transport", "stdio"],
                                   env=server_env(tmp_path, server.api_base), cwd=tmp_path)
    async with Client(params, read_timeout_seconds=120) as client:
        result = await client.call_tool("rlm_query", {"question": "q", "context": "c"})
    assert not result.is_error, result.content
    assert result.structured_content["answer"] == "promoted"
    server.verify()
