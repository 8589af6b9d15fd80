"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1.

Tests point a real client (dspy.LM, litellm, openai) at it, so the whole client path runs while
the replies come from a script: the first rule with uses left whose model and regex match answers.
A request no rule matches gets HTTP 400 and is recorded, so a missing rule fails loudly.

Rules can also misbehave as real providers do (status codes with `Retry-After`, replies cut at
the token limit, reasoning-only content, native tool calls, stalls, dropped connections,
malformed bodies), and a recorded run (`fleet run --record`) replays as rules
(`rules_from_recording`). The rule-file format is documented in docs/scripted-lm.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import uuid
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

TAIL_CHARS = 200
PREVIEW_CHARS = 120
RECEIVED_KEPT = 1000  # requests kept for `requests()`


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arguments: dict[str, Any] | str = {}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: str = ""
    model: str | None = None
    match: str | None = None
    times: int | None = Field(None, ge=1)
    delay_ms: int = Field(0, ge=0)
    status: int | None = Field(None, ge=400, le=599)
    retry_after: str | None = Field(
        None, description="The Retry-After header of a status reply (default 0; \"none\": no "
        "header, as most providers send a 5xx).")
    finish_reason: str = "stop"
    reasoning: str | None = Field(None, description="Sent as the message's reasoning_content.")
    tool_calls: list[ToolCall] | None = None
    stall_ms: int = Field(0, ge=0, description="A pause halfway through the reply's body.")
    fault: Literal["drop", "cut", "malformed"] | None = Field(
        None, description="drop: close the connection without a reply; cut: close it halfway "
        "through the body; malformed: HTTP 200 with a body that is not JSON.")
    messages: str | None = Field(
        None, description="Replay: the request's message text must equal this exactly.")
    body: dict[str, Any] | None = Field(
        None, description="Replay: send this JSON body verbatim (with `status`, or 200).")

    @field_validator("match")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"invalid regex {pattern!r}: {e}") from e
        return pattern

    def accepts(self, model: str, text: str) -> bool:
        if self.model is not None and not _same_model(self.model, model):
            return False
        if self.messages is not None and _redacted(text) != self.messages:
            return False
        return self.match is None or re.search(self.match, text, re.DOTALL) is not None


def _redacted(text: str) -> str:
    from fleet_rlm.redaction import redact

    return redact(text)


def request_text(messages: list[Any]) -> str:
    """The text a request's messages add up to: what rules match against."""
    return "\n\n".join(
        _content_text(m.get("content") if isinstance(m, dict) else m) for m in messages or [])


_RULES = TypeAdapter(list[Rule])
Script = list[dict[str, Any] | Rule] | str | Path


def load_rules(script: Script) -> list[Rule]:
    """Validate a script given as rules, dicts, or a JSON file holding a list of rules."""
    if isinstance(script, str | Path):
        text = Path(script).read_text()
        loaded: Any = rules_from_recording(text) if _is_recording(text) else json.loads(text)
        script = loaded
    if not isinstance(script, list):
        raise ValueError(f"an LM script is a list of rules, not {type(script).__name__}")
    try:
        return _RULES.validate_python(
            [r.model_dump() if isinstance(r, Rule) else r for r in script]
        )
    except ValidationError as e:
        raise ValueError(f"malformed LM script: {e}") from e


RECORDING_KIND = "fleet-lm-recording"


def _is_recording(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(head, dict) and head.get("kind") == RECORDING_KIND


def rules_from_recording(recording: str | Path) -> list[dict[str, Any]]:
    """The rules that replay a recorded run (JSON lines written by `fleet run --record`): each
    exchange answers once, the first unused one whose model and message text equal the
    request's, so calls made in the recorded order, or concurrently, get their own replies."""
    text = recording.read_text() if isinstance(recording, Path) else recording
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not lines or lines[0].get("kind") != RECORDING_KIND:
        raise ValueError(f"not a recorded run: the first line must be a {RECORDING_KIND} header")
    rules: list[dict[str, Any]] = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            request, response = line["request"], line["response"]
            rule: dict[str, Any] = {"model": request["model"], "times": 1,
                                    "messages": request_text(request["messages"])}
        except (KeyError, TypeError) as e:
            raise ValueError(f"recorded run line {n} is not an exchange: missing {e}") from e
        if response.get("fault"):
            rule["fault"] = "drop"
        else:
            status = int(response.get("status") or 200)
            if status != 200:
                rule["status"] = status
            if response.get("retry_after") is not None:
                rule["retry_after"] = str(response["retry_after"])
            rule["body"] = response.get("body") or {}
        rules.append(rule)
    return rules


def _same_model(rule_model: str, request_model: str) -> bool:
    # Clients disagree on whether the provider prefix goes on the wire (litellm strips `openai/`).
    def bare(m: str) -> str:
        return m.split("/", 1)[1] if "/" in m else m

    return rule_model == request_model or bare(rule_model) == bare(request_model)


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # multimodal parts: only the text parts can match
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": str(code)}}


class _State:
    """Rules plus counters, behind one lock so concurrent requests never double-spend a rule."""

    def __init__(self, rules: list[Rule]) -> None:
        self._lock = threading.Lock()
        self.set_rules(rules)

    def set_rules(self, rules: list[Rule]) -> None:
        with self._lock:
            self.rules = rules
            self._reset()

    def reset(self) -> None:
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self.uses = [0] * len(self.rules)
        self.calls = 0
        self.unexpected: list[str] = []
        self.models: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()
        self.connections = 0
        self.received: deque[dict[str, str]] = deque(maxlen=RECEIVED_KEPT)

    def pick(self, model: str, text: str, last_user: str, user_agent: str) -> Rule | None:
        with self._lock:
            self.calls += 1
            self.received.append({"model": model, "text": text})
            self.models[model] += 1
            self.user_agents[user_agent] += 1
            for i, rule in enumerate(self.rules):
                if (rule.times is None or self.uses[i] < rule.times) and rule.accepts(model, text):
                    self.uses[i] += 1
                    return rule
            self.unexpected.append(f"{model}: ...{last_user[-PREVIEW_CHARS:]}")
            return None

    def requests(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.received)

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "rule_uses": list(self.uses),
                "unexpected": len(self.unexpected),
                "unexpected_calls": list(self.unexpected),
                "models": dict(self.models),
                # Shows which client stack made the calls (dspy's native engine vs litellm).
                "user_agents": dict(self.user_agents),
                # Connections accepted: a client that reuses its connections opens few.
                "connections": self.connections,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: pooled clients would otherwise reconnect per call
    # Headers and body go out in two writes; without this each reply waits on a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_stats":
            self._send_json(200, state.stats())
        elif self.path == "/v1/models":
            names = dict.fromkeys(r.model for r in state.rules if r.model)
            data = [
                {"id": n, "object": "model", "created": 0, "owned_by": "scripted"} for n in names
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(f"no route {self.path}", "not_found_error", 404))

    def do_POST(self) -> None:
        try:
            body = self._read_json()
        except json.JSONDecodeError as e:
            self._send_json(
                400, _error_body(f"body is not JSON: {e}", "invalid_request_error", 400)
            )
            return
        if self.path == "/v1/chat/completions":
            self._complete(body)
        elif self.path == "/_script":
            try:
                self.server.state.set_rules(load_rules(body))
            except ValueError as e:
                self._send_json(400, _error_body(str(e), "invalid_request_error", 400))
                return
            self._send_json(200, {"rules": len(self.server.state.rules)})
        elif self.path == "/_reset":
            self.server.state.reset()
            self._send_json(200, {"reset": True})
        else:
            self._send_json(404, _error_body(f"no route {self.path}", "not_found_error", 404))

    def _complete(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        text = request_text(messages)
        users = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
        last_user = users[-1] if users else ""
        user_agent = self.headers.get("User-Agent", "")
        rule = self.server.state.pick(model, text, last_user, user_agent)
        if rule is None:
            message = (
                f"scripted LM: no rule matched a request for model {model!r}; "
                f"last user message ends with: {last_user[-TAIL_CHARS:]!r}"
            )
            self._send_json(400, _error_body(message, "invalid_request_error", 400))
            return
        time.sleep(rule.delay_ms / 1000)
        if rule.fault == "drop":
            self._drop()
            return
        if rule.status is not None:
            message = f"scripted LM: scripted failure {rule.status}: {rule.reply}"
            # Retry-After: 0 lets clients that honour it (dspy, openai) retry without sleeping.
            error = rule.body or _error_body(message, "scripted_error", rule.status)
            headers = {} if rule.retry_after == "none" else {"Retry-After": rule.retry_after or "0"}
            self._send_body(rule, rule.status, json.dumps(error).encode(), "application/json",
                            headers)
            return
        if rule.fault == "malformed":
            self._send_body(rule, 200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess',
                            "application/json")
            return
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if rule.body is not None and not body.get("stream"):
            self._send_body(rule, 200, json.dumps(rule.body).encode(), "application/json")
            return
        parts, finish, usage = _reply_parts(rule, text)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(rule, head, parts, finish, usage if include_usage else None)
            return
        choice = {"index": 0, "message": parts, "finish_reason": finish}
        reply = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        self._send_body(rule, 200, json.dumps(reply).encode(), "application/json")

    def _drop(self) -> None:
        """Close the connection with no reply at all (a reset, as a dying proxy does)."""
        self.close_connection = True
        try:
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_body(self, rule: Rule, status: int, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        """Send `data`, stalling or cutting the connection halfway if the rule says so."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        half = len(data) // 2
        if rule.stall_ms or rule.fault == "cut":
            self.wfile.write(data[:half])
            self.wfile.flush()
            time.sleep(rule.stall_ms / 1000)
            if rule.fault == "cut":
                self._drop()
                return
            data = data[half:]
        self.wfile.write(data)

    def _stream(self, rule: Rule, head: dict[str, Any], message: dict[str, Any], finish: str,
                usage: dict[str, int] | None) -> None:
        # Without chunked encoding an SSE body is delimited by closing the connection.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        head = {**head, "object": "chat.completion.chunk"}

        def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [event({"role": "assistant", "content": ""})]
        if message.get("reasoning_content"):
            events.append(event({"reasoning_content": message["reasoning_content"]}))
        pieces = re.findall(r"\S+\s*|\s+", message.get("content") or "")
        events += [event({"content": p}) for p in pieces]
        for i, call in enumerate(message.get("tool_calls") or []):
            events.append(event({"tool_calls": [{**call, "index": i}]}))
        events.append(event({}, finish))
        if usage is not None:  # as OpenAI does: a last chunk with no choices carries the usage
            events.append({**head, "choices": [], "usage": usage})
        half = len(events) // 2
        for i, e in enumerate(events):
            if i == half and (rule.stall_ms or rule.fault == "cut"):
                self.wfile.flush()
                time.sleep(rule.stall_ms / 1000)
                if rule.fault == "cut":
                    self._drop()
                    return
            self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def _reply_parts(rule: Rule, text: str) -> tuple[dict[str, Any], str, dict[str, int]]:
    """The assistant message, finish reason and usage a rule (or its recorded body) answers."""
    if rule.body is not None:
        choice = (rule.body.get("choices") or [{}])[0]
        recorded = dict(choice.get("message") or {"role": "assistant", "content": ""})
        usage = rule.body.get("usage") or {}
        return recorded, choice.get("finish_reason") or "stop", usage
    message: dict[str, Any] = {"role": "assistant", "content": rule.reply}
    if rule.reasoning is not None:
        message["reasoning_content"] = rule.reasoning
    if rule.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments if isinstance(c.arguments, str)
                          else json.dumps(c.arguments)}}
            for i, c in enumerate(rule.tool_calls)]
        if not rule.reply:
            message["content"] = None
    completion = _tokens(rule.reply) + _tokens(rule.reasoning or "")
    usage = {"prompt_tokens": _tokens(text), "completion_tokens": completion}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return message, rule.finish_reason, usage


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of parallel connections

    def __init__(self, port: int, state: _State) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state

    def process_request(self, request: Any, client_address: Any) -> None:
        self.state.connected()
        super().process_request(request, client_address)


class ScriptedLMServer:
    """The scripted server in a background thread; use it as a context manager."""

    def __init__(self, rules: Script, port: int = 0) -> None:
        self._state = _State(load_rules(rules))
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ScriptedLMServer:
        self._httpd = _Server(self._port, self._state)
        # A short poll interval keeps stop() (one per test) from waiting the default half second.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="scripted-lm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ScriptedLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ScriptedLMServer is not running; call start() or use `with`")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def api_base(self) -> str:
        return self.url + "/v1"

    @property
    def rules(self) -> list[Rule]:
        return self._state.rules

    def stats(self) -> dict[str, Any]:
        return self._state.stats()

    def requests(self) -> list[dict[str, str]]:
        """The last requests received (at most RECEIVED_KEPT), oldest first: each one's model
        and its message text as `match` sees it."""
        return self._state.requests()

    def set_rules(self, rules: Script) -> None:
        self._state.set_rules(load_rules(rules))

    def reset(self) -> None:
        self._state.reset()

    def verify(self) -> None:
        """Fail if any call went unanswered or a rule with `times` was not used up."""
        stats = self.stats()
        unused = [
            f"rule {i} used {used}/{rule.times}: {rule.model_dump(exclude_defaults=True)}"
            for i, (rule, used) in enumerate(zip(self.rules, stats["rule_uses"], strict=True))
            if rule.times is not None and used < rule.times
        ]
        problems = [f"unexpected call {u}" for u in stats["unexpected_calls"]] + unused
        if problems:
            raise AssertionError("scripted LM script not followed:\n  " + "\n  ".join(problems))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, type=Path,
                        help="JSON file with a list of rules, or a recorded run to replay")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = _Server(args.port, _State(load_rules(args.script)))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
