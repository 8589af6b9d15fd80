"""A session's own models: set with PATCH, used by its next turns, tested with "Test connection"
(`POST /sessions/{id}/test-model`), and never a way to send the server's key elsewhere."""

from __future__ import annotations

from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url

from fleet_rlm.config import Settings


def _turn(client, session_id: str, text: str) -> list[dict]:
    with client.websocket_connect(ws_url(session_id)) as ws:
        ws.receive_json()
        ws.send_json({"type": "message", "text": text})
        return until_finished(ws.receive_json)


def _on_model(rules: list[dict], model: str) -> list[dict]:
    return [{**rule, "model": model} for rule in rules]


def test_a_sessions_models_answer_its_next_turns(scripted_lm, tmp_path):
    lm = scripted_lm([*_on_model(quick("which", "from other"), "other"),
                      *quick("which", "from root")])
    with app_client(settings_for(lm, tmp_path)) as client:
        mine = client.post(f"{API}/sessions", json={"title": "mine"}).json()["id"]
        plain = client.post(f"{API}/sessions", json={"title": "plain"}).json()["id"]
        patched = client.patch(f"{API}/sessions/{mine}",
                               json={"root_model": "openai/other", "sub_model": "openai/small"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["root_model"] == "openai/other"
        assert client.get(f"{API}/sessions/{mine}").json()["sub_model"] == "openai/small"
        assert client.get(f"{API}/sessions/{plain}").json()["root_model"] is None

        assert _turn(client, mine, "which")[-1]["answer"] == "from other"
        assert _turn(client, plain, "which")[-1]["answer"] == "from root"

        # A title change leaves the models; null goes back to the server's.
        client.patch(f"{API}/sessions/{mine}", json={"title": "renamed"})
        assert client.get(f"{API}/sessions/{mine}").json()["root_model"] == "openai/other"
        cleared = client.patch(f"{API}/sessions/{mine}",
                               json={"root_model": None, "sub_model": None}).json()
        assert cleared["root_model"] is None and cleared["sub_model"] is None
        bad = client.patch(f"{API}/sessions/{mine}", json={"root_model": "no provider"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "root_model"


def test_test_connection_calls_each_model_and_says_what_failed(scripted_lm, tmp_path):
    lm = scripted_lm([{"model": "other", "match": "single word OK", "reply": "OK"},
                      {"model": "small", "match": "single word OK", "status": 401,
                       "times": 1, "reply": "bad key"}])
    with app_client(settings_for(lm, tmp_path)) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "t"}).json()["id"]
        only_root = client.post(f"{API}/sessions/{session_id}/test-model",
                                json={"root_model": "openai/other",
                                      "sub_model": "openai/other"}).json()
        assert only_root["ok"] is True and "openai/other answered" in only_root["message"]
        both = client.post(f"{API}/sessions/{session_id}/test-model",
                           json={"root_model": "openai/other", "sub_model": "openai/small"}
                           ).json()
        assert both["ok"] is False and both["problem"] == "auth", both


def test_a_session_model_of_another_provider_never_gets_the_servers_key(tmp_path):
    server = Settings(root_model="openai/gpt-4o-mini", api_key="sk-server-key",
                      data_dir=tmp_path)
    assert server.with_models("openai/gpt-4o", None).api_key == "sk-server-key"
    assert server.with_models("anthropic/claude-3-haiku", None).api_key is None
    assert server.with_models(None, "groq/llama").api_key is None
    behind_base = server.model_copy(update={"api_base": "http://127.0.0.1:9/v1"})
    assert behind_base.with_models("openai/gpt-4o", None).api_key == "sk-server-key"
    # Some providers ignore the API base and call their own endpoint with the key.
    assert behind_base.with_models("replicate/meta/llama", None).api_key is None
    assert behind_base.with_models(None, "vertex_ai/gemini-pro").api_key is None


def test_only_an_admin_points_a_session_at_another_provider(tmp_path):
    """FLEET_AUTH=none: whoever reaches the port is a user, not an admin. They may pick another
    model of the server's provider, never make the server call a new one."""
    settings = settings_for(None, tmp_path, auth="none", token=None,
                            root_model="openai/gpt-4o-mini", sub_model=None)
    with app_client(settings) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "t"}).json()["id"]
        same = client.patch(f"{API}/sessions/{session_id}", json={"root_model": "openai/gpt-4o"})
        assert same.status_code == 200, same.text
        for path, method in ((f"{API}/sessions/{session_id}", client.patch),
                             (f"{API}/sessions/{session_id}/test-model", client.post)):
            other = method(path, json={"root_model": "ollama/llama3"})
            assert other.status_code == 403, other.text
            assert "only an admin" in other.json()["message"]
            assert "ollama" in other.json()["message"]
        assert client.get(f"{API}/sessions/{session_id}").json()["root_model"] == "openai/gpt-4o"


def test_behind_an_api_base_a_user_cannot_pick_a_provider_that_ignores_it(tmp_path):
    settings = settings_for(None, tmp_path, auth="none", token=None, api_key="sk-server-key",
                            api_base="http://127.0.0.1:9/v1", root_model="openai/gpt-4o-mini",
                            sub_model=None)
    with app_client(settings) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "t"}).json()["id"]
        for model in ("replicate/meta/llama", "sagemaker/endpoint", "vertex_ai/gemini-pro"):
            other = client.post(f"{API}/sessions/{session_id}/test-model",
                                json={"root_model": model})
            assert other.status_code == 403, other.text
