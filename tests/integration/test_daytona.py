"""The Daytona backend through the real Daytona SDK, against a local stand-in of its HTTP API.

The stand-in (tests/daytona_standin.py) answers with the SDK's own models and runs each
sandbox's driver as a local subprocess, so the code really runs. One test at the end talks to
the real service; it runs only when DAYTONA_API_KEY is set.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

import dspy
import pytest
from typer.testing import CliRunner

import daytona_standin
from daytona_standin import DaytonaStandIn, cli_env
from fleet_rlm.cli import app
from fleet_rlm.config import Settings
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.sandbox import SandboxError, create_sandbox
from fleet_rlm.sandbox import daytona as backend
from fleet_rlm.sandbox.daytona import DaytonaSandbox, sandbox_labels, snapshot_name
from fleet_rlm.testing import ScriptedLMServer, two_level_rlm_rules

LOGS = r"WS /toolbox/.*/logs"
UPLOAD = r"POST /toolbox/.*/files/bulk-upload"
CREATE = r"POST /api/sandbox$"
INPUT = r"POST /toolbox/.*/input"
NEW_SESSION = r"POST /toolbox/.*/process/session$"
LIVE = bool(os.environ.get("DAYTONA_API_KEY"))

standin = daytona_standin.standin
settings = daytona_standin.settings
quick_polls = daytona_standin.quick_polls


@pytest.fixture
def sandbox(settings: Settings, standin: DaytonaStandIn) -> Iterator[DaytonaSandbox]:
    box = create_sandbox(settings)
    assert isinstance(box, DaytonaSandbox)
    box.start()
    yield box
    box.close()
    assert standin.live() == [], "a Daytona sandbox was left behind"


# -- the Sandbox protocol -------------------------------------------------------------------

def test_runs_code_keeps_state_and_deletes_the_sandbox_on_close(
        settings: Settings, standin: DaytonaStandIn) -> None:
    box = DaytonaSandbox(settings)
    box.start()
    first = box.execute("import sys\nx = 20\nprint('out', x)\nprint('err', file=sys.stderr)")
    assert (first.ok, first.stdout, first.stderr) == (True, "out 20\n", "err\n")
    assert box.execute("x * 2 + 2").stdout == "42\n"
    failed = box.execute("y = 1\n\n1 / 0")
    assert failed.error_type == "ZeroDivisionError" and failed.error_line == 3
    assert "<cell-" in failed.traceback and not failed.state_lost
    done = box.execute("SUBMIT(answer=x)", submit_fields=["answer"])
    assert done.final == {"answer": 20}

    spec = standin.create_requests[0]
    assert spec.labels["fleet-rlm"] == "true"
    assert spec.network_block_all is True
    assert spec.auto_stop_interval == 30 and spec.auto_delete_interval == 0
    assert spec.snapshot is None
    command = standin.sandboxes[box.sandbox_id].commands()[0].command
    assert command.startswith("cd /work 2>/dev/null; python3 -I ")
    assert command.split()[5].endswith("/.fleet/driver.py")
    assert box.execute("import os\nos.getcwd()").stdout.endswith("/home/daytona'\n")
    assert standin.count(UPLOAD) == 1  # the driver itself, no snapshot configured

    sandbox_id = box.sandbox_id
    box.close()
    assert (standin.created, standin.deleted, standin.live()) == (1, 1, [])
    assert standin.count(rf"DELETE /api/sandbox/{sandbox_id}") == 1
    assert box.execute("1 + 1").stdout == "2\n", "a closed sandbox starts afresh on use"
    box.close()
    assert (standin.created, standin.deleted) == (2, 2)


def test_auto_stop_outlives_the_turn_and_labels_come_from_the_context(
        settings: Settings, standin: DaytonaStandIn) -> None:
    settings = settings.model_copy(update={"max_wall_s": 3600, "daytona_auto_stop_minutes": 5,
                                           "daytona_auto_delete_minutes": 7})
    with sandbox_labels(session="s1", turn="t1"):
        box = DaytonaSandbox(settings, labels={"node": "n1"})
    with box:
        box.execute("pass")
    spec = standin.create_requests[0]
    assert spec.auto_stop_interval == 60 and spec.auto_delete_interval == 7
    assert {k: v for k, v in spec.labels.items() if k.startswith("fleet-rlm")} == {
        "fleet-rlm": "true", "fleet-rlm-session": "s1", "fleet-rlm-turn": "t1",
        "fleet-rlm-node": "n1"}


def test_variables_inline_and_large_ones_as_uploaded_files(
        sandbox: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    uploads = standin.count(UPLOAD)
    sandbox.put_variable("small", {"a": [1, 2]})
    assert standin.count(UPLOAD) == uploads
    big_text = "é" * 100_000
    big_list = list(range(30_000))
    sandbox.put_variable("big_text", big_text)
    sandbox.put_variable("big_list", big_list)
    assert standin.count(UPLOAD) == uploads + 2
    sandbox.put_variable("big_text", big_text)  # unchanged: not sent again
    assert standin.count(UPLOAD) == uploads + 2
    result = sandbox.execute("print(small['a'][1], len(big_text), big_text[:2], sum(big_list))")
    assert result.stdout == f"2 100000 éé {sum(big_list)}\n"
    assert sandbox.get_variable("small") == {"a": [1, 2]}


def test_host_callbacks_go_over_the_same_channel(sandbox: DaytonaSandbox) -> None:
    seen: list[str] = []

    def shout(text: str) -> str:
        seen.append(threading.current_thread().name)
        return text.upper()

    def broken() -> None:
        raise ValueError("no")

    code = ("from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    out = list(pool.map(shout, ['a', 'b', 'c', 'd']))\n"
            "print(out)\n"
            "try:\n"
            "    broken()\n"
            "except RuntimeError as exc:\n"
            "    print(exc)\n")
    result = sandbox.execute(code, callbacks={"shout": shout, "broken": broken})
    assert result.ok, result.traceback
    assert result.stdout == "['A', 'B', 'C', 'D']\nbroken() failed: ValueError: no\n"
    assert len(seen) == 4


def test_timeout_interrupts_and_keeps_state(sandbox: DaytonaSandbox,
                                            standin: DaytonaStandIn) -> None:
    sandbox.execute("kept = 'yes'")
    result = sandbox.execute("while True:\n    pass", timeout=1)
    assert result.timed_out and result.error_type == "TimeoutError" and not result.state_lost
    assert sandbox.execute("kept").stdout == "'yes'\n"
    assert standin.count(NEW_SESSION) == 1


def test_interrupt_from_another_thread(sandbox: DaytonaSandbox) -> None:
    threading.Timer(0.5, sandbox.interrupt).start()
    result = sandbox.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout=20)
    assert result.error_type == "KeyboardInterrupt" and not result.timed_out


def test_ignored_interrupt_kills_the_session_not_the_sandbox(
        sandbox: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    sandbox.execute("kept = 1")
    stubborn = ("while True:\n"
                "    try:\n"
                "        while True:\n"
                "            pass\n"
                "    except KeyboardInterrupt:\n"
                "        pass\n")
    result = sandbox.execute(stubborn, timeout=1)
    assert result.timed_out and result.state_lost
    assert standin.count(r"DELETE /toolbox/.*/process/session/fleet-driver-\w+-1$") == 1
    after = sandbox.execute("print('back')\nkept")
    assert after.stdout == "back\n" and after.error_type == "NameError"
    assert standin.count(NEW_SESSION) == 2 and standin.created == 1


def test_driver_dying_mid_exec_is_state_lost_with_a_clear_error(
        sandbox: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    sandbox.execute("kept = 1")
    result = sandbox.execute("import os, signal\nprint('before')\nos.kill(os.getpid(), 9)")
    assert result.state_lost and not result.timed_out
    assert result.error_type == "SandboxDied"
    assert "died" in result.error_message and "variables are lost" in result.error_message

    def kill_soon() -> None:
        time.sleep(0.5)
        for command in standin.running_commands(sandbox.sandbox_id):
            command.kill()

    threading.Thread(target=kill_soon).start()
    result = sandbox.execute("import time\ntime.sleep(30)")
    assert result.state_lost and result.error_type == "SandboxDied"
    assert sandbox.execute("print('again')").stdout == "again\n"
    assert standin.created == 1 and standin.count(NEW_SESSION) == 3


def test_a_dropped_output_stream_reconnects_without_repeating_output(
        sandbox: DaytonaSandbox, standin: DaytonaStandIn) -> None:
    assert sandbox.execute("print('one')").stdout == "one\n"
    for command in standin.running_commands(sandbox.sandbox_id):
        command.drop_streams()
    assert sandbox.execute("print('two')").stdout == "two\n"
    assert sandbox.execute("print('three')").stdout == "three\n"
    assert standin.count(LOGS) == 2
    assert not sandbox.execute("1").state_lost


def test_a_sandbox_that_never_starts_is_deleted(settings: Settings) -> None:
    with DaytonaStandIn(polls_until_started=10**6) as standin:
        settings = settings.model_copy(update={"daytona_api_url": standin.api_url,
                                               "daytona_create_timeout_s": 1.5})
        box = DaytonaSandbox(settings)
        with pytest.raises(SandboxError, match="Daytona could not start the sandbox.*"
                           "FLEET_DAYTONA_CREATE_TIMEOUT_S"):
            box.start()
        assert (standin.created, standin.deleted) == (1, 1)


def test_a_driver_that_cannot_start_takes_its_sandbox_with_it(
        settings: Settings, standin: DaytonaStandIn) -> None:
    name = snapshot_name()
    standin.snapshots[name] = _snapshot(name)
    standin.snapshot_files[name] = {backend.SNAPSHOT_DRIVER: b"raise SystemExit('no driver')"}
    box = DaytonaSandbox(settings.model_copy(update={"daytona_snapshot": name}))
    with pytest.raises(SandboxError, match="sandbox failed to start.*driver stderr: no driver"):
        box.start()
    assert (standin.created, standin.deleted, standin.live()) == (1, 1, [])


def test_a_sandbox_deleted_behind_our_back_is_replaced(
        sandbox: DaytonaSandbox, settings: Settings, standin: DaytonaStandIn) -> None:
    sandbox.execute("kept = 1")
    first = sandbox.sandbox_id
    backend.client(settings).get(first).delete()
    lost = sandbox.execute("kept")
    assert lost.state_lost and lost.error_type == "SandboxDied"
    fresh = sandbox.execute("print('new home')\nkept")
    assert fresh.stdout == "new home\n" and fresh.error_type == "NameError"
    assert sandbox.sandbox_id != first and standin.created == 2


def test_a_sandbox_polled_until_started(settings: Settings) -> None:
    with DaytonaStandIn(polls_until_started=1) as standin:
        settings = settings.model_copy(update={"daytona_api_url": standin.api_url})
        with DaytonaSandbox(settings) as box:
            assert box.execute("print(1)").stdout == "1\n"
        assert standin.count(r"GET /api/sandbox/") >= 1 and standin.live() == []


# -- failures -------------------------------------------------------------------------------

def test_rate_limited_create_and_input_are_retried(settings: Settings,
                                                   standin: DaytonaStandIn) -> None:
    standin.fail("POST", r"/api/sandbox$", 429, "Too Many Requests", times=2,
                 headers={"Retry-After": "0"})
    with DaytonaSandbox(settings) as box:
        standin.fail("POST", r"/input$", 503, "Service Unavailable")
        assert box.execute("print('fine')").stdout == "fine\n"
    assert standin.count(CREATE) == 3 and standin.created == 1
    assert standin.live() == []


def test_create_failing_with_500_is_reported_and_nothing_leaks(
        settings: Settings, standin: DaytonaStandIn) -> None:
    standin.fail("POST", r"/api/sandbox$", 500, "Internal Server Error")
    with pytest.raises(SandboxError, match="Daytona could not start the sandbox.*Internal"):
        DaytonaSandbox(settings).start()
    assert standin.count(CREATE) == 1 and standin.created == 0


@pytest.mark.parametrize(("status", "message", "hint"), [
    (401, "Invalid credentials", "rejected the API key: check DAYTONA_API_KEY"),
    (403, "Forbidden resource", "lacks a permission.*write and delete on sandboxes"),
    (403, "Total CPU quota exceeded. Maximum allowed: 10", "quota is used up.*fleet daytona gc"),
    (429, "Sandbox quota exceeded", "quota is used up"),
])
def test_api_errors_are_actionable(settings: Settings, standin: DaytonaStandIn, status: int,
                                   message: str, hint: str) -> None:
    standin.fail("POST", r"/api/sandbox$", status, message, times=10)
    with pytest.raises(SandboxError, match=hint):
        DaytonaSandbox(settings).start()
    assert standin.count(CREATE) == 1, "a quota or key error is not retried"


def test_a_wrong_key_is_actionable(settings: Settings) -> None:
    box = DaytonaSandbox(settings.model_copy(update={"daytona_api_key": "wrong"}))
    with pytest.raises(SandboxError, match=r"\(401\)|rejected the API key"):
        box.start()


def test_no_key_at_all_is_actionable(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path) -> None:
    monkeypatch.delenv("DAYTONA_API_KEY", raising=False)
    monkeypatch.delenv("DAYTONA_JWT_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env for the SDK to read a key from
    box = DaytonaSandbox(settings.model_copy(update={"daytona_api_key": None}))
    with pytest.raises(SandboxError, match="no Daytona API key: set DAYTONA_API_KEY"):
        box.start()


def test_an_unreachable_api_is_actionable(settings: Settings) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api"
    box = DaytonaSandbox(settings.model_copy(update={"daytona_api_url": url}))
    with pytest.raises(SandboxError, match=f"cannot reach the Daytona API at {url}"):
        box.start()


def test_an_unknown_target_or_snapshot_is_actionable(settings: Settings,
                                                     standin: DaytonaStandIn) -> None:
    with pytest.raises(SandboxError, match="set DAYTONA_TARGET to a region"):
        DaytonaSandbox(settings.model_copy(update={"daytona_target": "mars"})).start()
    with pytest.raises(SandboxError, match="run `fleet daytona snapshot`"):
        DaytonaSandbox(settings.model_copy(update={"daytona_snapshot": "nope"})).start()
    assert standin.created == 0


def test_a_missing_sdk_names_the_extra(settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "daytona", None)
    box = create_sandbox(settings)  # the SDK is only needed once a sandbox starts
    with pytest.raises(SandboxError, match=r"pip install 'fleet-rlm\[daytona\]'"):
        box.start()


# -- settings, snapshot, gc -----------------------------------------------------------------

def test_settings_read_daytona_and_fleet_variable_names(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEET_SANDBOX", "daytona")
    monkeypatch.setenv("DAYTONA_API_KEY", "plain")
    monkeypatch.setenv("DAYTONA_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("DAYTONA_TARGET", "eu")
    s = Settings()
    assert (s.sandbox, s.daytona_api_key, s.daytona_api_url, s.daytona_target) == (
        "daytona", "plain", "http://127.0.0.1:1/api", "eu")
    monkeypatch.setenv("FLEET_DAYTONA_API_KEY", "fleet")
    assert Settings().daytona_api_key == "fleet"
    assert Settings(daytona_api_key="given").daytona_api_key == "given"


def test_snapshot_command_bakes_the_driver_in(settings: Settings, standin: DaytonaStandIn,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path) -> None:
    cli_env(monkeypatch, standin, tmp_path)
    runner = CliRunner()
    made = runner.invoke(app, ["daytona", "snapshot"])
    assert made.exit_code == 0, made.output
    name = snapshot_name()
    assert f"created: {name}" in made.output and f"FLEET_DAYTONA_SNAPSHOT={name}" in made.output
    assert "already there" in runner.invoke(app, ["daytona", "snapshot"]).output
    assert list(standin.snapshot_files[name]) == [backend.SNAPSHOT_DRIVER]
    baked = standin.snapshot_files[name][backend.SNAPSHOT_DRIVER]
    assert baked == backend.DRIVER_SOURCE.read_bytes()

    with DaytonaSandbox(settings.model_copy(update={"daytona_snapshot": name})) as box:
        assert box.execute("print('from the snapshot')").stdout == "from the snapshot\n"
        here = box.execute("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())")
        assert here.ok and here.stdout.endswith("/work\n"), "the snapshot has a writable /work"
        command = standin.sandboxes[box.sandbox_id].commands()[0].command
    assert standin.count(UPLOAD) == 0
    assert f"cd /work 2>/dev/null; python3 -I {backend.SNAPSHOT_DRIVER} " in command
    assert standin.create_requests[0].snapshot == name


def test_a_snapshot_with_another_driver_gets_this_one_uploaded(
        settings: Settings, standin: DaytonaStandIn,
        caplog: pytest.LogCaptureFixture) -> None:
    stale = backend.SNAPSHOT_PREFIX + "000000000000"
    standin.snapshots[stale] = _snapshot(stale)
    standin.snapshot_files[stale] = {backend.SNAPSHOT_DRIVER: b"raise SystemExit('old driver')"}
    with DaytonaSandbox(settings.model_copy(update={"daytona_snapshot": stale})) as box:
        assert box.execute("print('current')").stdout == "current\n"
    assert standin.count(UPLOAD) == 1
    assert "carries another version of the driver" in caplog.text


def _snapshot(name: str):
    from daytona_api_client.models import SnapshotDto, SnapshotState

    return SnapshotDto(id=name, general=False, name=name, state=SnapshotState.ACTIVE, size=None,
                       entrypoint=None, cpu=1, gpu=0, mem=1, disk=3, error_reason=None,
                       created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z",
                       last_used_at=None, source_sandbox_id=None)


def test_gc_deletes_fleet_sandboxes_of_given_turns_or_all(
        settings: Settings, standin: DaytonaStandIn, monkeypatch: pytest.MonkeyPatch,
        tmp_path) -> None:
    boxes = {}
    for turn in ("t1", "t1", "t2"):
        with sandbox_labels(turn=turn):
            box = DaytonaSandbox(settings)
        box.start()
        boxes.setdefault(turn, []).append(box.sandbox_id)
    import daytona

    foreign = backend.client(settings).create(
        daytona.CreateSandboxFromSnapshotParams(labels={"team": "other"}))
    cli_env(monkeypatch, standin, tmp_path)
    runner = CliRunner()

    first = runner.invoke(app, ["daytona", "gc", "t1"])
    assert first.exit_code == 0, first.output
    assert "2 sandboxes deleted" in first.output
    assert sorted(set(standin.live())) == sorted([*boxes["t2"], foreign.id])

    assert runner.invoke(app, ["daytona", "gc"], input="n\n").exit_code == 1  # asked, declined
    assert len(standin.live()) == 2
    everything = runner.invoke(app, ["daytona", "gc", "--yes"])
    assert "1 sandbox deleted" in everything.output
    assert standin.live() == [foreign.id]
    foreign.delete()


# -- a whole recursive run ------------------------------------------------------------------

@pytest.mark.parametrize("flaky", [False, True], ids=["clean", "rate-limited"])
def test_recursive_run_gives_every_node_its_own_daytona_sandbox(
        settings: Settings, standin: DaytonaStandIn, flaky: bool) -> None:
    if flaky:  # two sandbox creations and one message to a driver are turned away first
        standin.fail("POST", r"/api/sandbox$", 429, "Too Many Requests", times=2)
        standin.fail("POST", r"/input$", 429, "Too Many Requests", times=1)
    with dspy.context(lm=None), ScriptedLMServer(two_level_rlm_rules()) as lm:
        run_settings = settings.model_copy(update={
            "root_model": "openai/root", "sub_model": "openai/sub", "api_base": lm.api_base})
        out = RecursiveRLM("context, question -> answer", settings=run_settings,
                           max_iterations=3)(context="x" * 30, question="q")
        stats = lm.stats()
    assert out.status == "ok", out.error
    assert out.answer == " | ".join(["chunk-summary"] * 3)
    nodes = {e.node_id for e in out.events if e.type == "rlm_started"}
    assert len(nodes) == 4
    assert standin.created == 4 and standin.deleted == 4 and standin.live() == []
    assert standin.count(CREATE) == 4 + (2 if flaky else 0)
    # Each sandbox is labelled with its turn and node, so `fleet daytona gc TURN` finds them.
    labels = [spec.labels for spec in standin.create_requests]
    assert {label["fleet-rlm-turn"] for label in labels} == {out.events[0].turn_id}
    assert {label["fleet-rlm-node"] for label in labels} == nodes
    # The budget counts model calls only: retries and sandboxes add none.
    assert out.usage.calls == stats["calls"] == 8
    assert stats["unexpected_calls"] == []
    outputs = [e for e in out.events if e.type == "code_output"]
    assert outputs and not any(e.state_lost for e in outputs)


# -- the real service -----------------------------------------------------------------------

@pytest.mark.skipif(not LIVE, reason="live Daytona test: set DAYTONA_API_KEY to run it against "
                    "the real service (unreachable from CI)")
def test_live_daytona(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIVE: creates one real Daytona sandbox, runs code, callbacks and a large variable."""
    import conftest

    # The one test allowed off this machine: lift the loopback-only guard.
    monkeypatch.setattr(socket.socket, "connect", conftest._real_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", conftest._real_connect_ex)
    monkeypatch.setattr(socket, "create_connection", conftest._real_create_connection)
    settings = Settings(sandbox="daytona", exec_timeout_s=60)
    with sandbox_labels(session="pytest-live"), DaytonaSandbox(settings) as box:
        assert box.execute("print(6 * 7)").stdout == "42\n"
        box.put_variable("big", "z" * 200_000)
        result = box.execute("len(big), twice(21)", callbacks={"twice": lambda n: n * 2})
        assert result.stdout == "(200000, 42)\n", result
        result = box.execute("while True:\n    pass", timeout=2)
        assert result.timed_out and not result.state_lost
        assert json.loads(box.execute("import json; print(json.dumps(1))").stdout) == 1
