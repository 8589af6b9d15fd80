"""Turns found across sessions (text, status, model, cost, duration, dates, tags; sorted and
paged), turn tags, and usage by model and role, through the REST API on real turns."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pg_deployment import database_settings
from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url

PRICES = {"openai/root": {"input_per_mtok": 10.0, "output_per_mtok": 10.0},
          "openai/other": {"input_per_mtok": 0.1, "output_per_mtok": 0.1}}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Iterator[dict]:
    yield from database_settings(request.param, "trace_api", tmp_path)


def _as(model: str, rules: list[dict]) -> list[dict]:
    return [{**rule, "model": model} for rule in rules]


def _turn(client, title: str, text: str, limits: dict | None = None) -> dict:
    session_id = client.post(f"{API}/sessions", json={"title": title}).json()["id"]
    with client.websocket_connect(ws_url(session_id)) as ws:
        assert ws.receive_json()["type"] == "session"
        ws.send_json({"type": "message", "text": text, **({"limits": limits} if limits else {})})
        frames = until_finished(ws.receive_json)
    return {"session_id": session_id, "turn_id": frames[-1]["turn_id"],
            "status": frames[-1]["status"]}


def _ids(page: dict) -> list[str]:
    return [item["turn_id"] for item in page["items"]]


def test_turns_are_found_filtered_sorted_paged_and_tagged(scripted_lm, tmp_path, database):
    server = scripted_lm(quick("Find the needle", "The needle is in haystack 7.")
                         + quick("Stop early", "never")
                         + _as("other", quick("Count the apples", "Seven APPLES.")))
    with app_client(settings_for(server, tmp_path, prices=PRICES, **database)) as client:
        needle = _turn(client, "Alpha", "Find the needle")
        early = _turn(client, "Beta", "Stop early", limits={"max_calls": 1})
    with app_client(settings_for(server, tmp_path, prices=PRICES, root_model="openai/other",
                                 **database)) as client:
        apples = _turn(client, "Gamma", "Count the apples")
        assert (needle["status"], early["status"], apples["status"]) == ("ok", "budget", "ok")

        def search(**params) -> dict:
            response = client.get(f"{API}/turns", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        every = search()
        assert _ids(every) == [apples["turn_id"], early["turn_id"], needle["turn_id"]]
        first = every["items"][2]
        assert (first["session_title"], first["question"], first["status"]) == (
            "Alpha", "Find the needle", "ok")
        assert first["models"] == ["openai/root"] and first["calls"] == 2
        assert first["cost_usd"] > 0 and first["duration_s"] > 0 and first["tags"] == []
        assert every["items"][0]["models"] == ["openai/other"]
        assert every["next_cursor"] is None

        assert _ids(search(q="apples")) == [apples["turn_id"]]  # the answer, any case
        assert _ids(search(q="NEEDLE")) == [needle["turn_id"]]  # the question
        assert _ids(search(status="budget")) == [early["turn_id"]]
        assert _ids(search(model="openai/other")) == [apples["turn_id"]]
        cheap = apples_cost = every["items"][0]["cost_usd"]
        assert _ids(search(max_cost=cheap)) == [apples["turn_id"]]
        assert apples["turn_id"] not in _ids(search(min_cost=apples_cost * 2))
        assert _ids(search(sort="calls", order="asc"))[0] == early["turn_id"]
        by_cost = search(sort="cost_usd", order="desc")["items"]
        assert [i["cost_usd"] for i in by_cost] == sorted((i["cost_usd"] for i in by_cost),
                                                          reverse=True)
        assert search(min_duration_s=10_000)["items"] == []
        assert len(search(max_duration_s=10_000)["items"]) == 3
        today = datetime.now(UTC).date()
        assert len(search(since=today.isoformat(), until=today.isoformat())["items"]) == 3
        assert search(until=(today - timedelta(days=1)).isoformat())["items"] == []
        assert client.get(f"{API}/turns", params={"since": "last week"}).status_code == 422

        page = search(limit=2)
        assert _ids(page) == _ids(every)[:2] and page["next_cursor"]
        rest = search(limit=2, cursor=page["next_cursor"])
        assert _ids(rest) == _ids(every)[2:] and rest["next_cursor"] is None
        assert client.get(f"{API}/turns", params={"cursor": "junk"}).status_code == 422
        huge = base64.urlsafe_b64encode(b"o:" + b"9" * 40).decode()  # past any integer column
        assert client.get(f"{API}/turns", params={"cursor": huge}).status_code == 422
        for far in ({"until": "9999-12-31"}, {"since": "0001-01-01T00:00:00+23:59"}):
            answer = client.get(f"{API}/turns", params=far)
            assert answer.status_code in (200, 422), answer.text
            assert answer.headers["content-type"] == "application/json"

        tagged = client.put(f"{API}/turns/{needle['turn_id']}/tags",
                            json={"tags": ["gold", " gold ", "review"]})
        assert tagged.status_code == 200 and tagged.json()["tags"] == ["gold", "review"]
        assert _ids(search(tag="gold")) == [needle["turn_id"]]
        assert search(tag="gol")["items"] == []
        assert client.get(f"{API}/turns/{needle['turn_id']}").json()["tags"] == ["gold", "review"]
        too_long = client.put(f"{API}/turns/{needle['turn_id']}/tags", json={"tags": ["x" * 65]})
        assert too_long.status_code == 422
        assert client.put(f"{API}/turns/nope/tags", json={"tags": []}).status_code == 404


def test_usage_of_a_model_without_a_price_says_so(scripted_lm, tmp_path, database) -> None:
    server = scripted_lm(quick("hello", "hi"))
    with app_client(settings_for(server, tmp_path, **database)) as client:
        one = _turn(client, "One", "hello")
        response = client.get(f"{API}/usage/models", params={"turn_id": one["turn_id"]})
        (row,) = response.json()["rows"]
        assert (row["calls"], row["unpriced_calls"], row["cost_usd"]) == (2, 2, 0)


def test_usage_by_model_and_role_for_a_turn_a_session_and_dates(scripted_lm, tmp_path,
                                                               database):
    server = scripted_lm(quick("hello", "hi") + quick("again", "yes"))
    with app_client(settings_for(server, tmp_path, prices=PRICES, **database)) as client:
        one = _turn(client, "One", "hello")
        two = _turn(client, "Two", "again")

        def usage(**params) -> dict:
            response = client.get(f"{API}/usage/models", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        (row,) = usage(turn_id=one["turn_id"])["rows"]
        assert (row["model"], row["role"], row["calls"]) == ("openai/root", "agent", 2)
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cost_usd"] > 0
        assert row["unpriced_calls"] == 0
        turn = client.get(f"{API}/turns/{one['turn_id']}").json()
        assert row["cost_usd"] == turn["usage"]["usd"]
        assert usage(session_id=two["session_id"])["rows"][0]["calls"] == 2
        today = datetime.now(UTC).date().isoformat()
        assert usage(since=today)["rows"][0]["calls"] == 4
        assert usage(until="2000-01-01")["rows"] == []
        for params in ({}, {"turn_id": one["turn_id"], "session_id": one["session_id"]}):
            response = client.get(f"{API}/usage/models", params=params)
            assert response.status_code == 422 and "exactly one scope" in response.json()["message"]
        assert client.get(f"{API}/usage/models", params={"turn_id": "nope"}).status_code == 404
