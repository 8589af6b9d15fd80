"""Schemathesis over the served OpenAPI document: every operation of /api/v1, against the app on a
real uvicorn (settings and data in tmp, the scripted LM server as api_base), on SQLite and on
PostgreSQL, never answers 5xx, and answers only statuses, content types and bodies its document
declares (errors included: each is the declared `ErrorBody`).

Path ids are mostly real ones (a session with a document, a finished turn and one of its model
calls, a workspace file; DELETEs get a session and document of their own), so the generated
requests reach the handlers instead of stopping at 404. No operation is skipped: the settings
checks run too (one model call to the scripted server, one sandbox start), and so does PATCH
/settings, whose changes the later requests see. (The session WebSocket is not an OpenAPI
operation.)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
import zlib
from collections.abc import Iterator
from importlib.util import find_spec

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from test_server_support import (
    API,
    BEARER,
    TOKEN,
    app_client,
    quick,
    settings_for,
    until_finished,
    uvicorn_server,
    ws_url,
)
from websockets.sync.client import connect

from fleet_rlm.store import Store

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = 20  # per operation and mode (valid, invalid input): ~1 min per database
WORKSPACE_FILE = "notes/a.txt"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _seed(base: str) -> dict[str, str]:
    """Real ids to aim at, and one session and one document for the DELETEs to remove."""
    def post(path: str, **kwargs) -> dict:
        response = httpx.post(f"{base}{API}{path}", headers=BEARER, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()

    def document(session_id: str, name: str) -> str:
        return post(f"/sessions/{session_id}/documents",
                    files={"file": (name, b"# Notes\nhello world\n")})["id"]

    session_id = post("/sessions", json={"title": "fuzzed"})["id"]
    with connect(ws_url(session_id, base.replace("http", "ws"), TOKEN)) as ws:
        ws.recv(timeout=30)
        ws.send(json.dumps({"type": "message", "text": "hello"}))
        turn_id = until_finished(lambda: json.loads(ws.recv(timeout=60)))[-1]["turn_id"]
    events = httpx.get(f"{base}{API}/turns/{turn_id}/events", headers=BEARER).json()["events"]
    call_id = next(e["call_id"] for e in events if e["type"] == "lm_call")
    written = httpx.put(f"{base}{API}/sessions/{session_id}/workspace/file",
                        params={"path": WORKSPACE_FILE}, content=b"abc", headers=BEARER)
    assert written.status_code == 200, written.text
    return {"session_id": session_id, "document_id": document(session_id, "notes.md"),
            "turn_id": turn_id, "call_id": call_id,
            "doomed_document_id": document(session_id, "doomed.md"),
            "doomed_session_id": post("/sessions", json={"title": "doomed"})["id"]}


async def _seed_version(settings) -> str:
    """A program version of the local tenant to promote (there is no route that makes one)."""
    from fleet_rlm.optimize.targets import baseline

    release, instructions = baseline(settings, "agent")
    async with Store.from_settings(settings) as store:
        await store.prepare()
        version = await store.programs.add(
            "local", "agent", dataset="d", metric="exact", release=release,
            baseline=instructions, instructions=instructions, score_before=0.0,
            score_after=0.0, stopped=None, detail={})
    return version.id


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> Iterator[str | None]:
    """The default SQLite file in the data dir, or a fresh PostgreSQL database (127.0.0.1:5432,
    trust auth), which refuses some input SQLite takes (NUL characters, integers past int4)."""
    if request.param == "sqlite":
        yield None
        return
    name = f"fleet_fuzz_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres",
                                     database="postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        asyncio.run(_upgrade(url))  # the server never migrates PostgreSQL itself
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _upgrade(url: str) -> None:
    async with Store(url, "/tmp") as store:
        await store.upgrade()


@pytest.fixture
def api_schema(scripted_lm, tmp_path, database_url):
    # The seeded turn's script, then one catch-all reply for the model check (and any prompt).
    lm = scripted_lm([*quick("hello", "hi"), {"reply": "OK"}])
    # With MLflow (on SQLite: once is enough), the seeded turn has a trace and feedback on it is
    # recorded for real.
    tracking = (f"sqlite:///{tmp_path / 'mlflow.db'}"
                if database_url is None and find_spec("mlflow") else None)
    settings = settings_for(lm, tmp_path / "data", database_url=database_url,
                            mlflow_tracking_uri=tracking)
    version_id = asyncio.run(_seed_version(settings))
    with uvicorn_server(settings) as base:
        ids = {**_seed(base), "version_id": version_id, "target": "agent"}
        schema = schemathesis.openapi.from_url(f"{base}{API}/openapi.json")

        @schema.hook
        def map_path_parameters(context, path_parameters):
            if not path_parameters:
                return path_parameters
            delete = context.operation.method.upper() == "DELETE"
            mapped = dict(path_parameters)
            for name, value in path_parameters.items():
                # Two in three generated ids become real ones; the rest stay random (404s).
                if _hash(value) % 3:
                    doomed = delete and f"{{{name}}}" == context.operation.path.split("/")[-1]
                    mapped[name] = ids[f"doomed_{name}" if doomed else name]
            return mapped

        @schema.hook
        def map_query(context, query):
            if query and "path" in query and _hash(query["path"]) % 2:
                return {**query, "path": WORKSPACE_FILE}
            return query

        yield schema


@pytest.fixture(autouse=True)
def _mlflow_uri_restored():
    """MLflow exports its tracking URI as MLFLOW_TRACKING_URI, which Settings would read later."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(before)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


def _hash(value: object) -> int:
    return zlib.crc32(repr(value).encode())


def test_every_operation_answers_as_its_document_declares(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def run(case):
                case.call_and_validate(headers=BEARER, checks=CHECKS, timeout=60)

            try:
                run()
            except Unsatisfiable:  # nothing invalid to send: its only parameter is any string
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # noqa: BLE001 - every operation runs, all failures shown
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)


def test_inputs_the_fuzzing_found_are_client_errors(database_url, tmp_path):
    with app_client(settings_for(None, tmp_path, database_url=database_url)) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "edges"}).json()["id"]
        turn = client.portal.call(client.app.state.svc.store.turns.start, session_id, "q")
        huge = 2**63
        for path, params in ((f"{API}/sessions", {"offset": huge}),
                             (f"{API}/turns/{turn.id}/events", {"after_seq": huge})):
            response = client.get(path, params=params)
            assert response.status_code == 422, response.text
            assert "less than or equal to 2147483647" in response.json()["message"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "resume", "turn_id": turn.id, "last_seq": huge})
            assert ws.receive_json()["code"] == "bad_frame"
        # SQLite stores a NUL character; PostgreSQL cannot, which is the client's problem.
        named = client.post(f"{API}/sessions", json={"title": "a\x00b"})
        looked_up = client.get(f"{API}/sessions/a%00b")
        if database_url is None:
            assert named.status_code == 201 and looked_up.status_code == 404
        else:
            for response in (named, looked_up):
                assert response.status_code == 422, response.text
                assert response.json()["message"] == ("the database cannot take this input: "
                                                      'invalid byte sequence for encoding "UTF8": '
                                                      "0x00")
        client.portal.call(lambda: client.app.state.svc.store.turns.finish(turn.id, "cancelled"))
