"""A session turn recorded with FLEET_RECORD_FILE (the session API's setting) replays offline:
the scripted server, fed the recording, answers the same turn with the same events."""

from __future__ import annotations

import json

from test_server_support import quick, settings_for

from fleet_rlm.sessions import LOCAL, SessionService
from fleet_rlm.testing import ScriptedLMServer, load_rules

VARYING = {"turn_id", "node_id", "parent_id", "ts", "latency_s", "elapsed_s", "duration_s",
           "wall_s", "request_id", "session_id", "id", "call_id"}
KEY = "sk-sessionrecording0123456789"


def comparable(value):
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


async def one_turn(server: ScriptedLMServer, data_dir, **overrides) -> tuple[str, list]:
    service = SessionService(settings_for(server, data_dir, api_key=KEY, **overrides))
    await service.open()
    try:
        session = await service.create_session(principal=LOCAL)
        posted = await service.post(LOCAL, session.id, "hello")
        outcome = await posted.done
        return outcome.answer, await service.turn_events(LOCAL, posted.turn_id)
    finally:
        await service.close()


async def test_a_recorded_session_turn_replays_to_the_same_events(tmp_path):
    recording = tmp_path / "turn.jsonl"
    with ScriptedLMServer([{"model": "root", "status": 503, "times": 1}, *quick("hello", "hi")]) \
            as real:
        answer, events = await one_turn(real, tmp_path / "a", record_file=recording)
        calls = real.stats()["calls"]
    assert answer == "hi"
    lines = [json.loads(line) for line in recording.read_text().splitlines()]
    assert lines[0]["kind"] == "fleet-lm-recording" and len(lines) == 1 + calls
    assert {line["turn_id"] for line in lines[1:]} == {events[0]["turn_id"]}
    assert KEY not in recording.read_text()
    with ScriptedLMServer(load_rules(recording)) as replay:
        replayed_answer, replayed = await one_turn(replay, tmp_path / "b")
        replay.verify()
    assert replayed_answer == "hi"
    assert comparable(replayed) == comparable(events)
