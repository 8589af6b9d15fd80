"""A session's workspace on Daytona: the same REST routes browse its volume through its sandbox,
under the same path rules as a local workspace; deleting the session deletes its sandbox and
volume, and `fleet daytona gc` deletes the volumes of sessions that are gone — through the real
SDK against the stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_server_support import API, app_client
from typer.testing import CliRunner

import daytona_standin
from daytona_standin import DaytonaStandIn, cli_env
from fleet_rlm.cli import app
from fleet_rlm.config import Settings
from fleet_rlm.sandbox import daytona_admin as admin
from fleet_rlm.sessions import SAVE_STATE, SessionService

standin = daytona_standin.standin
settings = daytona_standin.settings
quick_polls = daytona_standin.quick_polls


@pytest.fixture
def data_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"data_dir": tmp_path / "data",
                                       "max_workspace_file_mb": 1})


@pytest.fixture
def client(data_settings: Settings) -> Iterator:
    with app_client(data_settings) as client:
        yield client


def _session(client) -> str:
    response = client.post(f"{API}/sessions", json={"title": "on Daytona"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_rest_routes_browse_the_session_volume_through_its_sandbox(
        client, standin: DaytonaStandIn) -> None:
    svc = client.app.state.svc
    session_id = _session(client)
    base = f"{API}/sessions/{session_id}/workspace"
    box = svc.session_sandbox(session_id)
    wrote = box.execute("open('/work/artifacts/x.txt', 'w').write('from the sandbox')")
    assert wrote.ok, wrote

    top = client.get(base).json()["entries"]
    assert [(e["name"], e["type"], e["protected"]) for e in top] == [
        ("artifacts", "dir", False), ("buffers", "dir", False), ("memory", "dir", False),
        ("meta", "dir", True)]
    [entry] = client.get(base, params={"path": "artifacts"}).json()["entries"]
    assert (entry["name"], entry["path"], entry["type"], entry["size"]) == (
        "x.txt", "artifacts/x.txt", "file", 16)
    read = client.get(f"{base}/file", params={"path": "artifacts/x.txt"})
    assert read.status_code == 200 and read.content == b"from the sandbox"
    assert read.headers["content-length"] == "16"
    assert read.headers["content-type"].startswith("text/plain")
    assert read.headers["x-content-type-options"] == "nosniff"

    put = client.put(f"{base}/file", params={"path": "artifacts/notes/y.txt"}, content=b"hi")
    assert put.json() == {"path": "artifacts/notes/y.txt", "size": 2}
    assert box.execute("print(open('/work/artifacts/notes/y.txt').read())").stdout == "hi\n"
    page = client.put(f"{base}/file", params={"path": "page.html"}, content=b"<script>x")
    assert page.status_code == 200
    assert client.get(f"{base}/file", params={"path": "page.html"}).headers[
        "content-type"].startswith("text/plain")
    assert standin.created == 1  # one sandbox for all of it, the session's own

    # The same refusals as a local workspace, before anything reaches Daytona.
    before = len(standin.requests)
    for method, path in [("GET", "../secret.txt"), ("GET", "/etc/passwd"),
                         ("PUT", "artifacts/../../x"), ("DELETE", "/etc/hosts")]:
        refused = client.request(method, f"{base}/file", params={"path": path}, content=b"x")
        assert refused.status_code == 400 and refused.json()["error"] == "bad_path", path
    assert client.get(base, params={"path": "../.."}).status_code == 400
    for path in ("meta/namespace.pkl", "meta", "./meta/lost.json"):
        refused = client.delete(f"{base}/file", params={"path": path})
        assert refused.status_code == 403 and refused.json()["error"] == "protected", path
    assert client.delete(f"{base}/file", params={"path": ""}).status_code == 400
    too_big = client.put(f"{base}/file", params={"path": "big.bin"},
                         content=b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413
    assert len(standin.requests) == before

    # What the toolbox says, as a local workspace says it.
    for path, status, code in [("artifacts/none.txt", 404, "not_found"),
                               ("artifacts", 400, "not_a_file")]:
        response = client.get(f"{base}/file", params={"path": path})
        assert (response.status_code, response.json()["error"]) == (status, code), path
    assert client.get(base, params={"path": "nowhere"}).status_code == 404
    assert client.get(base, params={"path": "artifacts/x.txt"}).status_code == 400
    assert client.delete(f"{base}/file", params={"path": "artifacts/notes"}
                         ).json()["error"] == "conflict"  # not empty
    for path in ("artifacts/notes/y.txt", "artifacts/notes", "page.html"):
        assert client.delete(f"{base}/file", params={"path": path}).status_code == 204, path
    assert client.get(f"{base}/file", params={"path": "artifacts/notes/y.txt"}
                      ).status_code == 404
    assert box.execute("import os\nprint(os.listdir('/work/artifacts'))").stdout == \
        "['x.txt']\n"
    assert client.delete(f"{base}/file", params={"path": "nothing"}).status_code == 404


def test_a_replaced_sandbox_shows_the_same_files(client, data_settings: Settings,
                                                 standin: DaytonaStandIn) -> None:
    svc = client.app.state.svc
    session_id = _session(client)
    base = f"{API}/sessions/{session_id}/workspace"
    # Browsing a session that never ran code starts its sandbox: a volume has no file API.
    put = client.put(f"{base}/file", params={"path": "memory/notes.md"}, content=b"kept")
    assert put.status_code == 200 and standin.created == 1
    admin.client(data_settings).get(svc.session_sandbox(session_id).sandbox_id).delete()

    read = client.get(f"{base}/file", params={"path": "memory/notes.md"})
    assert read.content == b"kept"
    assert standin.created == 2 and len(standin.live()) == 1
    assert standin.live_volumes() == [f"fleet-rlm-{session_id}"]


def test_the_routes_and_a_turn_asking_at_once_get_one_sandbox(client, standin: DaytonaStandIn
                                                              ) -> None:
    svc = client.app.state.svc
    session_id = _session(client)
    with ThreadPoolExecutor(4) as pool:
        boxes = list(pool.map(lambda _: svc.session_sandbox(session_id), range(4)))
    assert len({id(box) for box in boxes}) == 1 and standin.created == 1


def test_an_unreachable_workspace_is_a_clear_502(client, standin: DaytonaStandIn) -> None:
    session_id = _session(client)
    standin.fail("POST", r"/api/sandbox$", 403, "Total CPU quota exceeded. Maximum allowed: 4")
    response = client.get(f"{API}/sessions/{session_id}/workspace")
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "unavailable" and "quota is used up" in body["message"]


def test_lost_variables_are_read_from_the_volume(client, standin: DaytonaStandIn) -> None:
    svc = client.app.state.svc
    session_id = _session(client)
    assert svc.lost_variables(session_id) == []
    box = svc.session_sandbox(session_id)
    assert box.execute("x = 1\nsquare = lambda v: v * v\nf = open('buffers/log', 'w')").ok
    assert box.execute(SAVE_STATE).ok  # as the service does after each turn
    assert svc.lost_variables(session_id) == ["f", "square"]
    meta = standin.volume_dir(f"fleet-rlm-{session_id}") / "meta"
    assert (meta / "lost.json").exists() and (meta / "namespace.pkl").exists()


def test_deleting_the_session_deletes_its_sandbox_and_volume(
        client, data_settings: Settings, standin: DaytonaStandIn) -> None:
    svc = client.app.state.svc
    kept, deleted = _session(client), _session(client)
    for session_id in (kept, deleted):
        assert svc.session_sandbox(session_id).execute("print(1)").ok
    assert len(standin.live()) == 2
    assert client.delete(f"{API}/sessions/{deleted}").status_code == 204
    assert standin.live_volumes() == [f"fleet-rlm-{kept}"]
    assert standin.live() == [svc.session_sandbox(kept).sandbox_id]
    assert not (data_settings.data_dir / "workspaces" / deleted).exists()
    assert client.get(f"{API}/sessions/{deleted}/workspace").status_code == 404

    # One that never ran code on Daytona has no volume: nothing more to do.
    never = _session(client)
    assert client.delete(f"{API}/sessions/{never}").status_code == 204
    assert standin.live_volumes() == [f"fleet-rlm-{kept}"]
    assert standin.count("DELETE /api/volumes/") == 1


async def _two_sessions_one_deleted(settings: Settings, standin: DaytonaStandIn
                                    ) -> tuple[str, str]:
    """A live session and a deleted one whose volume Daytona failed to delete."""
    svc = SessionService(settings)
    await svc.open()
    try:
        live, orphan = (await svc.create_session()).id, (await svc.create_session()).id
        for session_id in (live, orphan):
            box = await asyncio.to_thread(svc.session_sandbox, session_id)
            assert (await asyncio.to_thread(box.execute, "print(1)")).ok
        standin.fail("DELETE", r"^/api/volumes/", 500, "storage unavailable")
        await svc.delete_session(orphan)  # the session goes; its volume stays for now
    finally:
        await svc.close()
    return live, orphan


def test_a_volume_left_by_a_failed_delete_is_collected_by_gc(
        data_settings: Settings, standin: DaytonaStandIn, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, orphan = asyncio.run(_two_sessions_one_deleted(data_settings, standin))
    assert "fleet daytona gc` deletes it later" in caplog.text
    api = admin.client(data_settings)
    api.volume.create(f"fleet-rlm-{'0' * 32}")  # a session that never was here
    api.volume.get(f"fleet-rlm-{'0' * 32}")  # now ready
    api.volume.create("fleet-rlm-pending")  # being made: not deletable yet
    api.volume.create("team-data")
    api.volume.get("team-data")
    assert standin.live_volumes() == sorted([
        f"fleet-rlm-{'0' * 32}", f"fleet-rlm-{live}", f"fleet-rlm-{orphan}",
        "fleet-rlm-pending", "team-data"])

    cli_env(monkeypatch, standin, tmp_path)
    monkeypatch.setenv("FLEET_DATA_DIR", str(data_settings.data_dir))
    runner = CliRunner()
    by_turn = runner.invoke(app, ["daytona", "gc", "some-turn"])
    assert by_turn.exit_code == 0, by_turn.output
    assert "volume" not in by_turn.output and len(standin.live_volumes()) == 5
    swept = runner.invoke(app, ["daytona", "gc", "--yes"])
    assert swept.exit_code == 0, swept.output
    assert f"deleted volume fleet-rlm-{orphan}" in swept.output
    assert "2 volumes of deleted sessions deleted" in swept.output
    assert standin.live_volumes() == sorted([f"fleet-rlm-{live}", "fleet-rlm-pending",
                                             "team-data"])
    assert standin.live() == []


def test_gc_keeps_every_volume_without_the_workspace_database(
        settings: Settings, standin: DaytonaStandIn, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    api = admin.client(settings)
    api.volume.create("fleet-rlm-abc")
    api.volume.get("fleet-rlm-abc")
    cli_env(monkeypatch, standin, tmp_path)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "elsewhere"))
    result = CliRunner().invoke(app, ["daytona", "gc", "--yes"])
    assert result.exit_code == 0, result.output
    assert "volumes kept: no fleet-rlm database at" in result.output
    assert standin.live_volumes() == ["fleet-rlm-abc"]
    assert not (tmp_path / "elsewhere").exists()  # looked for, not made
