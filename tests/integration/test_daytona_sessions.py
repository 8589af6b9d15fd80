"""A session's own sandbox on Daytona: its workspace on the session's volume, kept across turns,
started again after Daytona stops it, replaced on the same volume when it is gone, its saved
variables restored — through the real SDK against the stand-in, and through the session
service with scripted turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import daytona_standin
from daytona_standin import DaytonaStandIn
from fleet_rlm.config import Settings
from fleet_rlm.sandbox import SandboxError, create_sandbox
from fleet_rlm.sandbox import daytona_admin as admin
from fleet_rlm.sandbox.daytona import DaytonaSandbox
from fleet_rlm.sessions import RESTORE_STATE, SAVE_STATE, SessionService
from fleet_rlm.testing import AGENT_ANSWER, dspy_reply
from fleet_rlm.testing import dspy_agent_step as step

standin = daytona_standin.standin
settings = daytona_standin.settings
quick_polls = daytona_standin.quick_polls

LAYOUT = ["artifacts", "buffers", "memory", "meta"]
VOLUME_CREATE = r"POST /api/volumes$"
RESUME = r"POST /api/sandbox/[^/]+/start$"


def session_box(settings: Settings, tmp_path: Path, session: str = "s1") -> DaytonaSandbox:
    """The sandbox the session service makes for `session`, over a local workspace like its."""
    workspace = tmp_path / "workspaces" / session
    for name in LAYOUT:
        (workspace / name).mkdir(parents=True, exist_ok=True)
    box = create_sandbox(settings, work_dir=workspace, labels={"session": session},
                         restore=RESTORE_STATE)
    assert isinstance(box, DaytonaSandbox)
    return box


# -- the volume -------------------------------------------------------------------------------

def test_the_session_workspace_is_a_volume_that_outlives_its_sandboxes(
        settings: Settings, standin: DaytonaStandIn, tmp_path: Path) -> None:
    box = session_box(settings, tmp_path)
    assert box.volume == "fleet-rlm-s1"
    here = box.execute("import os\nprint(os.getcwd(), sorted(os.listdir('/work')))\n"
                       "_ = open('/work/artifacts/table.csv', 'w').write('a,b')")
    assert here.stdout == f"/work {LAYOUT}\n", here
    spec = standin.create_requests[0]
    volume_id = [v["id"] for v in _volumes(standin) if v["name"] == "fleet-rlm-s1"][0]
    assert [(v.volume_id, v.mount_path) for v in spec.volumes] == [(volume_id, "/work")]
    assert spec.labels["fleet-rlm-session"] == "s1"
    assert spec.labels["fleet-rlm-volume"] == "fleet-rlm-s1"
    volume = standin.volume_dir("fleet-rlm-s1")
    assert sorted(p.name for p in volume.iterdir()) == LAYOUT
    assert (volume / "artifacts" / "table.csv").read_text() == "a,b"
    box.close()
    assert standin.live() == [] and (volume / "artifacts" / "table.csv").exists()

    again = session_box(settings, tmp_path)
    assert again.execute("print(open('artifacts/table.csv').read())").stdout == "a,b\n"
    other = session_box(settings, tmp_path, session="s2")
    assert other.execute("import os\nprint(os.listdir('artifacts'))").stdout == "[]\n"
    node = create_sandbox(settings, labels={"turn": "t1", "node": "n1"})
    assert node.execute("import os\nprint(os.path.exists('/work'))").stdout == "False\n"
    for each in (again, other, node):
        each.close()
    assert standin.count(VOLUME_CREATE) == 2  # one per session, made on its first use
    assert standin.create_requests[-1].volumes == []  # an RLM node has no volume
    assert standin.live() == []


def test_a_volume_is_waited_for_until_daytona_has_it_ready(
        settings: Settings, standin: DaytonaStandIn, tmp_path: Path) -> None:
    with session_box(settings, tmp_path) as box:
        assert box.execute("print('ready')").stdout == "ready\n"
    # Made "pending_create"; the first look says so, the second finds it ready.
    assert standin.count(r"GET /api/volumes/by-name/fleet-rlm-s1$") == 3


def test_a_volume_in_error_says_so(settings: Settings, standin: DaytonaStandIn,
                                   tmp_path: Path) -> None:
    from daytona_api_client.models import VolumeState

    box = session_box(settings, tmp_path)
    admin.client(settings).volume.create("fleet-rlm-s1")
    volume = standin._volume("fleet-rlm-s1")
    volume.dto.state, volume.dto.error_reason = VolumeState.ERROR, "bucket unavailable"
    with pytest.raises(SandboxError, match="volume fleet-rlm-s1 is error: bucket unavailable"):
        box.start()
    assert standin.created == 0


# -- continuity -------------------------------------------------------------------------------

def _stop(settings: Settings, sandbox_id: str) -> None:
    admin.client(settings).get(sandbox_id).stop()


def _delete(settings: Settings, sandbox_id: str) -> None:
    admin.client(settings).get(sandbox_id).delete()


@pytest.mark.parametrize(("keep_stopped", "behind_our_back", "resumed"), [
    (60, _stop, True),     # kept once stopped: started again
    (0, _stop, False),     # deleted once stopped (the default): a new one on the volume
    (60, _delete, False),  # deleted (gc, by hand): a new one on the volume
], ids=["stopped", "stopped-and-auto-deleted", "deleted"])
def test_the_session_goes_on_whatever_happened_to_its_sandbox(
        settings: Settings, standin: DaytonaStandIn, tmp_path: Path, keep_stopped: int,
        behind_our_back, resumed: bool) -> None:
    settings = settings.model_copy(update={"daytona_auto_delete_minutes": keep_stopped})
    box = session_box(settings, tmp_path)
    assert box.execute(RESTORE_STATE).ok  # as the session service does when it makes one
    box.execute("x = 41\nopen('/work/memory/note.txt', 'w').write('kept')")
    assert box.execute(SAVE_STATE).ok  # as the session service does after each turn
    box.execute("unsaved = 1")
    first = box.sandbox_id
    behind_our_back(settings, first)

    after = box.execute("print(x + 1, open('/work/memory/note.txt').read())\n"
                        "print('unsaved' in globals())")
    assert after.stdout == "42 kept\nFalse\n", after
    assert (box.sandbox_id == first) is resumed
    assert (standin.started, standin.created) == ((1, 1) if resumed else (0, 2))
    assert standin.count(VOLUME_CREATE) == 1
    assert box.execute("x").stdout == "41\n"  # restored once, not before every call
    box.close()
    assert standin.live() == []


def test_a_new_process_takes_over_the_sandbox_an_earlier_one_left(
        settings: Settings, standin: DaytonaStandIn, tmp_path: Path) -> None:
    crashed = session_box(settings, tmp_path)  # never closed, as after a crash
    assert crashed.execute(RESTORE_STATE).ok
    crashed.execute("x = 1")
    crashed.execute(SAVE_STATE)
    successor = session_box(settings, tmp_path)
    assert successor.execute(RESTORE_STATE).ok
    assert successor.execute("print(x)").stdout == "1\n"
    assert successor.sandbox_id == crashed.sandbox_id and standin.created == 1
    assert len(standin.running_commands(successor.sandbox_id)) == 2  # both drivers run
    successor.close()
    crashed.close()  # its sandbox is gone already: nothing to do
    assert standin.live() == []


def test_a_sandbox_that_cannot_start_again_is_replaced(
        settings: Settings, standin: DaytonaStandIn, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"daytona_auto_delete_minutes": 60})
    box = session_box(settings, tmp_path)
    assert box.execute(RESTORE_STATE).ok
    box.execute("x = 7")
    box.execute(SAVE_STATE)
    first = box.sandbox_id
    _stop(settings, first)
    standin.fail("POST", r"/start$", 500, "runner unavailable")
    assert box.execute("print(x)").stdout == "7\n"
    assert box.sandbox_id != first and standin.created == 2
    assert first not in standin.live()
    box.close()


# -- through the session service --------------------------------------------------------------

def python_turn(message: str, code: str) -> dict:
    return {"model": "root", "match": rf"\[\[ ## message ## \]\]\n{message}\n.*next_thought",
            "times": 1, "reply": step("run it", "python", code=code)}


@pytest.fixture
async def services() -> AsyncIterator[list[SessionService]]:
    opened: list[SessionService] = []
    yield opened
    for svc in opened:
        await svc.close()


async def _turn(svc: SessionService, session_id: str, message: str) -> str:
    live = await svc.send(session_id, message)
    events = [e async for e in svc.events(live.turn_id)]
    result = await asyncio.wait_for(live.done, 60)
    assert result.status == "ok", result.error
    return [e.output for e in events if e.type == "tool_result"][0]


async def test_a_chat_session_on_daytona_is_one_continuous_session(
        scripted_lm, settings: Settings, standin: DaytonaStandIn, tmp_path: Path,
        services: list[SessionService]) -> None:
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": dspy_reply(reasoning="r", answer="ok")},
        {"model": "root", "match": "observation_0", "reply": step("done", "finish")},
        python_turn("set", "x = 42\nsquare = lambda v: v * v\n"
                           "open('/work/artifacts/out.txt', 'w').write('saved')\nprint(x)"),
        python_turn("same", "print(x, square(3))"),
        python_turn("after", "print(x, open('/work/artifacts/out.txt').read())\n"
                             "print('square' in globals())"),
        python_turn("restarted", "print(x)"),
    ])
    settings = settings.model_copy(update={
        "root_model": "openai/root", "sub_model": "openai/sub", "api_base": server.api_base,
        "data_dir": tmp_path})

    async def open_service() -> SessionService:
        services.append(SessionService(settings))
        await services[-1].open()
        return services[-1]

    svc = await open_service()
    session = (await svc.create_session()).id
    assert await _turn(svc, session, "set") == "42\n"
    # The next turn runs in the same sandbox: even what could not be saved is there.
    assert await _turn(svc, session, "same") == "42 9\n"
    assert standin.created == 1

    # Gone between turns (gc, auto-delete): a new sandbox on the session's volume, and the
    # variables saved after the last turn are back.
    _delete(settings, svc.session_sandbox(session).sandbox_id)
    assert await _turn(svc, session, "after") == "42 saved\nFalse\n"
    assert standin.created == 2

    await svc.close()  # deletes the session's sandbox; the volume stays
    services.remove(svc)
    assert standin.live() == []
    svc = await open_service()
    assert await _turn(svc, session, "restarted") == "42\n"
    assert standin.created == 3 and standin.count(VOLUME_CREATE) == 1
    server.verify()


def _volumes(standin: DaytonaStandIn) -> list[dict]:
    return [v.dto.to_dict() for v in standin.volumes.values()]
