"""A client generated from the server's OpenAPI document by openapi-python-client (run in its own
environment with `uv tool run`, pinned) parses the server's real answers, errors included: every
error status is declared with the body the server sends (`ErrorBody`), so a 422 or a 404 reads as
data instead of crashing the client in FastAPI's default `HTTPValidationError`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from test_server_support import TOKEN, settings_for, uvicorn_server

from fleet_rlm.server.app import create_app
from uv_support import uv_command

pytestmark = pytest.mark.slow
GENERATOR = "openapi-python-client==0.29.1"


@pytest.fixture
def generated(tmp_path, monkeypatch):
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(create_app(settings_for(None, tmp_path)).openapi()))
    command = [*uv_command(), "tool", "run", "--from", GENERATOR, "openapi-python-client",
               "generate", "--path", str(spec), "--meta", "none",
               "--output-path", str(tmp_path / "fleet_api_client")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("fleet_api_client")
    for name in [m for m in sys.modules if m.startswith("fleet_api_client")]:
        del sys.modules[name]


def test_a_generated_client_reads_every_answer_errors_included(generated, tmp_path):
    models = importlib.import_module("fleet_api_client.models")

    def op(name: str):
        return importlib.import_module(f"fleet_api_client.api.sessions.{name}")

    with uvicorn_server(settings_for(None, tmp_path / "data")) as base:
        client = generated.AuthenticatedClient(base_url=base, token=TOKEN)
        created = op("create_session_api_v1_sessions_post").sync(
            client=client, body=models.SessionCreate(title="generated"))
        assert isinstance(created, models.SessionOut) and created.title == "generated"

        invalid = op("list_sessions_api_v1_sessions_get").sync_detailed(client=client, limit=0)
        assert invalid.status_code == 422
        assert isinstance(invalid.parsed, models.ErrorBody)
        assert invalid.parsed.error == "invalid"
        assert invalid.parsed.detail[0].field == "limit"

        missing = op("get_session_api_v1_sessions_session_id_get").sync_detailed(
            "nope", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.ErrorBody)
        assert (missing.parsed.kind, missing.parsed.id) == ("session", "nope")

        anonymous = generated.Client(base_url=base)
        refused = op("get_session_api_v1_sessions_session_id_get").sync_detailed(
            created.id, client=anonymous)
        assert refused.status_code == 401 and refused.parsed.error == "unauthorized"
