"""A session's workspace on Daytona: the same REST routes browse its volume through its sandbox,
under the same path rules as a local workspace — through the real SDK against the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_server_support import API, app_client

import daytona_standin
from daytona_standin import DaytonaStandIn
from fleet_rlm.config import Settings
from fleet_rlm.sandbox import daytona_admin as admin
from fleet_rlm.sessions import SAVE_STATE

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
