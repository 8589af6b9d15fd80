from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dspy
import litellm
import openai
import pytest

from fleet_rlm.testing import Rule, ScriptedLMServer, dspy_json_reply, dspy_reply


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _chat(
    srv: ScriptedLMServer, text: str, model: str = "test-model"
) -> tuple[int, dict[str, Any]]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return _post(srv.api_base + "/chat/completions", body)


def _reply(response: dict[str, Any]) -> str:
    return response["choices"][0]["message"]["content"]


def _client(srv: ScriptedLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.api_base, api_key="x", max_retries=0)


def test_first_matching_rule_answers(scripted_lm) -> None:
    srv = scripted_lm(
        [
            {"match": r"capital.*France", "reply": "Paris"},
            {"match": "capital", "reply": "some capital"},
            {"reply": "fallback"},
        ]
    )
    assert _reply(_chat(srv, "What is the capital\nof France?")[1]) == "Paris"
    assert _reply(_chat(srv, "capital of Peru?")[1]) == "some capital"
    assert _reply(_chat(srv, "hello")[1]) == "fallback"
    assert srv.stats()["rule_uses"] == [1, 1, 1]


def test_times_exhaustion_falls_through(scripted_lm) -> None:
    srv = scripted_lm([Rule(reply="first", times=2), Rule(reply="after")])
    replies = [_reply(_chat(srv, "hi")[1]) for _ in range(4)]
    assert replies == ["first", "first", "after", "after"]
    assert srv.stats()["rule_uses"] == [2, 2]


def test_model_filter_ignores_provider_prefix(scripted_lm) -> None:
    srv = scripted_lm(
        [
            {"model": "openai/root", "reply": "from root"},
            {"model": "sub", "reply": "from sub"},
        ]
    )
    assert _reply(_chat(srv, "x", model="root")[1]) == "from root"
    assert _reply(_chat(srv, "x", model="openai/root")[1]) == "from root"
    assert _reply(_chat(srv, "x", model="openai/sub")[1]) == "from sub"
    status, _ = _chat(srv, "x", model="other")
    assert status == 400
    assert srv.stats()["models"] == {"root": 1, "openai/root": 1, "openai/sub": 1, "other": 1}


def test_unexpected_call_is_an_error_and_recorded(scripted_lm) -> None:
    srv = scripted_lm([{"match": "expected", "reply": "ok"}])
    status, body = _chat(srv, "a long preamble ... and then something nobody scripted")
    assert status == 400
    assert "no rule matched" in body["error"]["message"]
    assert "something nobody scripted" in body["error"]["message"]
    stats = _get(srv.url + "/_stats")
    assert stats["calls"] == 1
    assert stats["unexpected"] == 1
    assert "something nobody scripted" in stats["unexpected_calls"][0]
    with pytest.raises(AssertionError, match="unexpected call"):
        srv.verify()


def test_verify_reports_unused_rules(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "a", "times": 2}, {"reply": "b"}])
    _chat(srv, "x")
    with pytest.raises(AssertionError, match="rule 0 used 1/2"):
        srv.verify()
    _chat(srv, "x")
    srv.verify()


def test_delay(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "slow", "delay_ms": 300}])
    start = time.perf_counter()
    _chat(srv, "x")
    assert time.perf_counter() - start >= 0.3


def test_status_rule_returns_provider_error(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "overloaded", "status": 503}])
    with pytest.raises(openai.APIStatusError) as failure:
        _client(srv).chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "x"}]
        )
    assert failure.value.status_code == 503
    assert "overloaded" in str(failure.value)


def test_usage_estimates_chars_over_four(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "12345"}])
    _, body = _chat(srv, "abcdefghi")
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_openai_client_streaming(scripted_lm) -> None:
    reply = "Streaming works,\n across several words."
    srv = scripted_lm([{"reply": reply}])
    chunks = list(
        _client(srv).chat.completions.create(
            model="test-model",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == math.ceil(len(reply) / 4)


@pytest.mark.parametrize("include_usage", [True, False])
def test_litellm_streaming(scripted_lm, include_usage: bool) -> None:
    reply = dspy_reply(answer="streamed through litellm")
    srv = scripted_lm([{"reply": reply}])
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        litellm.completion(
            model="openai/test-model",
            api_base=srv.api_base,
            api_key="x",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            **options,
        )
    )
    built = litellm.stream_chunk_builder(chunks)
    assert built.choices[0].message.content == reply
    if include_usage:  # without it litellm estimates usage itself
        assert built.usage.prompt_tokens == 1
        assert built.usage.completion_tokens == math.ceil(len(reply) / 4)


def test_litellm_non_streaming_usage(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "done"}])
    response = litellm.completion(
        model="openai/test-model",
        api_base=srv.api_base,
        api_key="x",
        messages=[{"role": "user", "content": "abcd"}],
    )
    assert response.choices[0].message.content == "done"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (1, 1)


def test_dspy_predict_round_trip(scripted_lm) -> None:
    srv = scripted_lm(
        [{"model": "test-model", "match": "capital", "reply": dspy_reply(answer="Paris")}]
    )
    lm = dspy.LM("openai/test-model", api_base=srv.api_base, api_key="x", cache=False)
    with dspy.context(lm=lm, track_usage=True):
        prediction = dspy.Predict("question -> answer")(question="What is the capital of France?")
    assert prediction.answer == "Paris"
    assert prediction.get_lm_usage()["openai/test-model"] == lm.history[-1]["usage"]
    usage = lm.history[-1]["usage"]
    assert usage["completion_tokens"] == math.ceil(len(dspy_reply(answer="Paris")) / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    stats = srv.stats()
    assert stats["models"] == {"test-model": 1}
    # dspy 3.4 sends OpenAI-compatible calls through its own lm15 client, not litellm.
    assert [ua.split("/")[0] for ua in stats["user_agents"]] == ["lm15"]


def test_dspy_retries_scripted_failures_without_backoff(scripted_lm) -> None:
    srv = scripted_lm(
        [{"reply": "busy", "status": 503, "times": 2}, {"reply": dspy_reply(answer="ok")}]
    )
    lm = dspy.LM("openai/test-model", api_base=srv.api_base, api_key="x", cache=False)
    start = time.perf_counter()
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="q").answer == "ok"
    assert time.perf_counter() - start < 1.0
    assert srv.stats()["rule_uses"] == [2, 1]


def test_dspy_streaming(scripted_lm) -> None:
    srv = scripted_lm([{"reply": dspy_reply(answer="one two three")}])
    lm = dspy.LM("openai/test-model", api_base=srv.api_base, api_key="x", cache=False)
    listener = dspy.streaming.StreamListener(signature_field_name="answer")
    program = dspy.streamify(dspy.Predict("question -> answer"), stream_listeners=[listener])

    async def collect() -> list[Any]:
        with dspy.context(lm=lm):
            return [item async for item in program(question="q")]

    items = asyncio.run(collect())
    chunks = [i.chunk for i in items if isinstance(i, dspy.streaming.StreamResponse)]
    assert "".join(chunks) == "one two three"
    assert items[-1].answer == "one two three"
    assert lm.history[-1]["usage"]["completion_tokens"] == math.ceil(
        len(dspy_reply(answer="one two three")) / 4
    )


def test_dspy_reply_matches_chat_adapter_format() -> None:
    signature = dspy.Signature("question -> reasoning, code, n: int, items: list[str]")
    outputs = {"reasoning": "look", "code": "print(1)\nprint(2)", "n": 3, "items": ["a", "b"]}
    expected = dspy.ChatAdapter().format_assistant_message_content(signature, outputs)
    assert dspy_reply(**outputs) == expected
    assert dspy.ChatAdapter().parse(signature, dspy_reply(**outputs)) == outputs


def test_dspy_unparseable_reply_falls_back_to_json_adapter(scripted_lm) -> None:
    # ChatAdapter retries an unparseable reply once through JSONAdapter: a second LM call.
    srv = scripted_lm([{"reply": "not in any dspy format", "times": 1}])
    lm = dspy.LM("openai/test-model", api_base=srv.api_base, api_key="x", cache=False)
    with dspy.context(lm=lm), pytest.raises(dspy.utils.exceptions.LMError, match="no rule matched"):
        dspy.Predict("question -> answer")(question="q")
    assert srv.stats()["calls"] == 2
    assert "JSON object" in srv.stats()["unexpected_calls"][0]

    srv.set_rules(
        [{"reply": "still not a dspy reply", "times": 1}, {"reply": dspy_json_reply(answer="42")}]
    )
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="q").answer == "42"


def test_concurrent_requests_overlap(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "ok", "delay_ms": 200}])
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: _chat(srv, f"call {i}"), range(32)))
    assert time.perf_counter() - start < 1.5
    assert all(status == 200 for status, _ in results)
    assert srv.stats()["calls"] == 32


def test_runtime_script_reset_and_models(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "old"}])
    _chat(srv, "x")
    assert _post(srv.url + "/_script", [{"model": "openai/new", "reply": "new"}])[0] == 200
    assert _reply(_chat(srv, "x", model="new")[1]) == "new"
    assert srv.stats()["rule_uses"] == [1]
    assert [m["id"] for m in _get(srv.api_base + "/models")["data"]] == ["openai/new"]
    assert _post(srv.url + "/_reset", {})[0] == 200
    assert srv.stats() == {
        "calls": 0,
        "rule_uses": [0],
        "unexpected": 0,
        "unexpected_calls": [],
        "models": {},
        "user_agents": {},
        "connections": 0,
    }
    status, body = _post(srv.url + "/_script", [{"reply": "x", "typo": 1}])
    assert status == 400 and "typo" in body["error"]["message"]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"reply": "x", "tiems": 2}, "tiems"),
        ({"reply": "x", "match": "(unclosed"}, "invalid regex"),
        ({"reply": "x", "times": 0}, "times"),
        ({"reply": "x", "status": 200}, "status"),
    ],
)
def test_malformed_script_is_refused(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ScriptedLMServer([rule])


def test_script_file_and_cli(tmp_path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "ping", "reply": "pong"}]))
    with ScriptedLMServer(script) as srv:
        assert _reply(_chat(srv, "ping")[1]) == "pong"

    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet_rlm.testing.scripted_lm", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert _get(url + "/_stats")["calls"] == 0
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_network_is_blocked_except_loopback(scripted_lm) -> None:
    with pytest.raises(RuntimeError, match="non-loopback"):
        socket.create_connection(("8.8.8.8", 53), timeout=1)
    with socket.socket() as sock, pytest.raises(RuntimeError, match="non-loopback"):
        sock.connect(("8.8.8.8", 53))
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(RuntimeError, match="non-loopback"):
        sock.connect_ex(("2001:4860:4860::8888", 53))
    with pytest.raises(RuntimeError, match="non-loopback"):
        socket.create_connection(("api.openai.com", 443))

    srv = scripted_lm([{"reply": "local"}])
    port = int(srv.url.rsplit(":", 1)[1])
    socket.create_connection(("localhost", port), timeout=1).close()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) == 0


# -- misbehaving rules -------------------------------------------------------------------------

def _raw(srv: ScriptedLMServer, text: str, stream: bool = False) -> tuple[int, dict, bytes]:
    """One request over a bare socket-level client: status, headers and the raw body."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=5)
    body = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    try:
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_status_rule_sends_its_retry_after(scripted_lm) -> None:
    srv = scripted_lm([{"status": 429, "retry_after": "7", "reply": "slow down"}])
    status, headers, body = _raw(srv, "x")
    assert status == 429 and headers["Retry-After"] == "7"
    assert "slow down" in json.loads(body)["error"]["message"]


def test_finish_reason_reasoning_and_tool_calls(scripted_lm) -> None:
    srv = scripted_lm([
        {"match": "cut", "reply": "half an ans", "finish_reason": "length"},
        {"match": "think", "reasoning": "only thoughts"},
        {"match": "tool", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]},
    ])
    choice = _chat(srv, "cut")[1]["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "half an ans"
    message = _chat(srv, "think")[1]["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "", "reasoning_content": "only thoughts"}
    message = _chat(srv, "tool")[1]["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}


def test_streamed_reasoning_and_tool_calls(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "", "reasoning": "hmm",
                        "tool_calls": [{"name": "f", "arguments": "{}"}], "finish_reason": "x"}])
    _, _, body = _raw(srv, "x", stream=True)
    chunks = [json.loads(line[6:]) for line in body.decode().splitlines()
              if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert {"reasoning_content": "hmm"} in deltas
    assert any("tool_calls" in d for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "x"


def test_stall_pauses_mid_body(scripted_lm) -> None:
    srv = scripted_lm([{"reply": "slow " * 20, "stall_ms": 300}])
    started = time.perf_counter()
    status, _, body = _raw(srv, "x")
    assert status == 200 and time.perf_counter() - started >= 0.3
    assert _reply(json.loads(body)) == "slow " * 20


@pytest.mark.parametrize("stream", [False, True])
def test_stall_mid_stream(scripted_lm, stream) -> None:
    srv = scripted_lm([{"reply": "a b c d e f", "stall_ms": 250}])
    started = time.perf_counter()
    _raw(srv, "x", stream=stream)
    assert time.perf_counter() - started >= 0.25


@pytest.mark.parametrize("fault", ["drop", "cut"])
@pytest.mark.parametrize("stream", [False, True])
def test_dropped_and_cut_connections(scripted_lm, fault, stream) -> None:
    import http.client

    srv = scripted_lm([{"reply": "x" * 100, "fault": fault}])
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        status, _, body = _raw(srv, "x", stream=stream)
        if fault == "cut" and stream:  # SSE ends at close: a cut stream has no [DONE]
            assert b"[DONE]" not in body
            raise ConnectionError("stream cut")


def test_malformed_body(scripted_lm) -> None:
    srv = scripted_lm([{"fault": "malformed"}])
    status, headers, body = _raw(srv, "x")
    assert status == 200 and headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_replay_rules_match_the_request_text_and_send_the_body_verbatim(scripted_lm) -> None:
    from fleet_rlm.testing.scripted_lm import rules_from_recording

    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "two"},
                         "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}}
    lines = [{"kind": "fleet-lm-recording", "version": 1},
             {"request": {"model": "openai/m", "messages": [{"role": "user", "content": "one"}]},
              "response": {"status": 503, "retry_after": 0.0, "body": {"error": {"message": "b"}}}},
             {"request": {"model": "openai/m", "messages": [{"role": "user", "content": "one"}]},
              "response": {"status": 200, "body": body}}]
    rules = rules_from_recording("\n".join(json.dumps(line) for line in lines))
    srv = scripted_lm(rules)
    assert _raw(srv, "one")[0] == 503
    status, _, raw = _raw(srv, "one")
    assert status == 200 and json.loads(raw) == body
    assert _chat(srv, "one ")[0] == 400  # not the recorded request: refused
    with pytest.raises(ValueError, match="header"):
        rules_from_recording(json.dumps(lines[1]))
    with pytest.raises(ValueError, match="line 2"):
        rules_from_recording(json.dumps(lines[0]) + "\n" + json.dumps({"request": {}}))


def test_the_server_starts_from_the_command_line_without_a_runpy_warning(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "rules.json"
    script.write_text("[]")
    proc = subprocess.Popen([sys.executable, "-W", "error", "-m", "fleet_rlm.testing.scripted_lm",
                             "--script", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "Warning" not in stderr, stderr
