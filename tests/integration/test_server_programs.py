"""The Optimise page's API: a tenant's datasets and program versions, promotion and rollback by
its admin only, another tenant's versions missing, another release's refused, and each turn
naming the version it ran."""

from __future__ import annotations

from test_server_support import (
    API,
    app_client,
    quick,
    settings_for,
    until_finished,
    user_token,
    ws_url,
)


def test_versions_are_promoted_by_the_tenants_admin_and_turns_name_them(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi there"))
    data = tmp_path / "data"
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    alice = bearer(user_token(data, "alice", "--tenant", "alpha", "--admin"))
    bob = bearer(user_token(data, "bob", "--tenant", "alpha"))
    carol = bearer(user_token(data, "carol", "--tenant", "beta", "--admin"))
    with app_client(settings_for(server, data, auth="token")) as client:
        svc = client.app.state.svc
        session = client.post(f"{API}/sessions", json={"title": "x"}, headers=alice).json()
        tenant = client.portal.call(svc.store.sessions.get, session["id"]).tenant_id

        def add(release: str):
            return client.portal.call(lambda: svc.store.programs.add(
                tenant, "agent", dataset="capitals", metric="exact", release=release,
                baseline={"react": "old"}, instructions={"react": "new"}, score_before=0.25,
                score_after=0.75, stopped=None,
                detail={"prompt_diff": "-old\n+new", "curve": [{"score": 0.75}]}))

        version = add(svc.programs.release("agent"))
        stale = add("0123456789abcdef")
        client.portal.call(lambda: svc.store.datasets.create(
            tenant, "capitals", "feedback", [{"question": "q", "answer": "a"}] * 4))

        datasets = client.get(f"{API}/optimise/datasets", headers=bob).json()
        assert [(d["name"], d["source"], d["examples"]) for d in datasets] == [
            ("capitals", "feedback", 4)]
        listed = client.get(f"{API}/programs", headers=bob).json()
        assert listed["promoted"] == {"agent": None, "rlm": None}
        first = listed["versions"][0]
        assert (first["number"], first["score_before"], first["score_after"],
                first["prompt_diff"], first["compatible"]) == (1, 0.25, 0.75, "-old\n+new", True)
        assert listed["versions"][1]["compatible"] is False
        assert client.get(f"{API}/programs", headers=carol).json()["versions"] == []
        assert client.get(f"{API}/optimise/datasets", headers=carol).json() == []

        promote = f"{API}/programs/{version.id}/promote"
        assert client.post(promote, headers=bob).status_code == 403
        assert client.post(promote, headers=carol).status_code == 404
        refused = client.post(f"{API}/programs/{stale.id}/promote", headers=alice)
        assert refused.status_code == 409 and refused.json()["error"] == "incompatible"
        promoted = client.post(promote, headers=alice)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["promoted"]["agent"] == version.id
        assert client.get(f"{API}/programs", headers=carol).json()["versions"] == []

        with client.websocket_connect(ws_url(session["id"], token=alice["Authorization"][7:])) \
                as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello"})
            events = until_finished(ws.receive_json)
        assert events[0]["type"] == "turn_started"
        assert events[0]["programs"] == {"agent": version.id}
        turn = client.get(f"{API}/turns/{events[-1]['turn_id']}", headers=bob).json()
        assert turn["programs"] == {"agent": version.id}

        back = client.post(f"{API}/programs/targets/agent/rollback", headers=alice)
        assert back.status_code == 200 and back.json()["promoted"]["agent"] is None
        nothing = client.post(f"{API}/programs/targets/rlm/rollback", headers=alice)
        assert nothing.status_code == 404


def test_an_admin_runs_gepa_from_the_web_within_a_turns_budget(scripted_lm, tmp_path):
    import time

    from test_optimize import CAPITALS, RULE, question, toy_rules

    from fleet_rlm.testing import dspy_json_reply

    # The reflection model is the root model here: its prompt asks for a new instruction.
    server = scripted_lm([{"model": "root", "match": "new_instruction",
                           "reply": dspy_json_reply(new_instruction=RULE)},
                          *[r for r in toy_rules() if r.get("model") != "reflect"]])
    data = tmp_path / "data"
    alice = {"Authorization": f"Bearer {user_token(data, 'alice', '--tenant', 'alpha', '--admin')}"}
    bob = {"Authorization": f"Bearer {user_token(data, 'bob', '--tenant', 'alpha')}"}
    with app_client(settings_for(server, data, auth="token")) as client:
        svc = client.app.state.svc
        session = client.post(f"{API}/sessions", json={"title": "x"}, headers=alice).json()
        tenant = client.portal.call(svc.store.sessions.get, session["id"]).tenant_id
        client.portal.call(lambda: svc.store.datasets.create(
            tenant, "capitals", "jsonl",
            [{"question": question(c), "answer": city} for c, city in CAPITALS]))
        runs = f"{API}/optimise/runs"
        body = {"target": "agent", "dataset": "capitals", "metric": "exact",
                "max_metric_calls": 24}
        assert client.post(runs, json=body, headers=bob).status_code == 403
        unknown = client.post(runs, json={**body, "metric": "fuzzy"}, headers=alice)
        assert unknown.status_code == 422 and "unknown metric" in unknown.json()["message"]
        missing = client.post(runs, json={**body, "dataset": "nope"}, headers=alice)
        assert missing.status_code == 404
        raised = client.post(runs, json={**body, "limits": {"max_calls": 10**6}},
                             headers=alice)
        assert raised.status_code == 422
        assert server.stats()["calls"] == 0

        def finished() -> dict:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                [run, *_] = client.get(runs, headers=bob).json()
                if run["state"] != "running":
                    return run
                time.sleep(0.1)
            raise TimeoutError("the run did not finish")

        started = client.post(runs, json=body, headers=alice)
        assert started.status_code == 202 and started.json()["state"] == "running"
        run = finished()
        assert run["state"] == "done" and run["curve"][-1]["score"] == 1.0
        versions = client.get(f"{API}/programs", headers=bob).json()
        [made] = [v for v in versions["versions"] if v["id"] == run["version_id"]]
        assert (made["score_before"], made["score_after"], made["stopped"]) == (0.0, 1.0, None)
        assert versions["promoted"]["agent"] is None  # a run never promotes

        low = client.post(runs, json={**body, "limits": {"max_calls": 12}}, headers=alice)
        assert low.status_code == 202
        run = finished()
        versions = client.get(f"{API}/programs", headers=bob).json()
        [stopped] = [v for v in versions["versions"] if v["id"] == run["version_id"]]
        assert "calls" in stopped["stopped"] and stopped["score_after"] == 0.0
