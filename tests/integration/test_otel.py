"""OpenTelemetry export: a run and a chat turn arrive at a real OTLP/HTTP receiver (started
here, decoding the collector protocol with the official protobuf types) as span trees that
follow the event stream, named and attributed by the GenAI semantic conventions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_server_support import quick
from test_tracing import COUNT_NEEDLES, PRICES, TREE_RULES

from fleet_rlm import RecursiveRLM, otel
from fleet_rlm.config import Settings
from fleet_rlm.sessions import SessionService
from fleet_rlm.testing import ask_then_delegate_rules

trace_service = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class Receiver:
    """An OTLP/HTTP traces endpoint: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list = []
        self.resources: list = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service.ExportTraceServiceRequest.FromString(body)
                received.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    received.resources.append(resource_spans.resource)
                    for scope in resource_spans.scope_spans:
                        received.spans.extend(scope.spans)
                reply = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    otel.shutdown()


def attrs(span) -> dict:
    values = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        values[kv.key] = ([v.string_value for v in value.array_value.values]
                          if kind == "array_value" else getattr(value, kind))
    return values


class Spans:
    def __init__(self, spans: list) -> None:
        self.spans = spans
        self.by_id = {s.span_id: s for s in spans}

    def root(self):
        (root,) = [s for s in self.spans if not s.parent_span_id]
        return root

    def parent(self, span):
        return self.by_id.get(span.parent_span_id)

    def children(self, span) -> list:
        return sorted((s for s in self.spans if s.parent_span_id == span.span_id),
                      key=lambda s: s.start_time_unix_nano)

    def named(self, prefix: str) -> list:
        return [s for s in self.spans if s.name.startswith(prefix)]


def settings_for(server, endpoint: str, **extra) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    otel_exporter_otlp_endpoint=endpoint, prices=PRICES, **extra)


def test_a_two_level_run_arrives_as_one_span_tree(scripted_lm, receiver):
    server = scripted_lm(TREE_RULES)
    settings = settings_for(server, receiver.url)
    out = RecursiveRLM(settings=settings, max_iterations=3)(context="x" * 30, question="q")
    assert out.status == "ok", out.error
    trace_id = otel.export_events(settings, out.events, name="fleet run", wait=True)
    receiver.wait_for(1)
    assert set(receiver.paths) == {"/v1/traces"}
    tree = Spans(receiver.spans)
    assert {s.trace_id.hex() for s in tree.spans} == {trace_id}
    root = tree.root()
    assert root.name == "invoke_agent fleet"
    assert attrs(root)["gen_ai.operation.name"] == "invoke_agent"
    service = {kv.key: kv.value.string_value for kv in receiver.resources[0].attributes}
    assert service["service.name"] == "fleet-rlm"

    agents = tree.named("invoke_agent rlm")
    (top,) = [s for s in agents if attrs(s)["fleet.depth"] == 0]
    children = [s for s in agents if attrs(s)["fleet.depth"] == 1]
    assert tree.parent(top) is root and len(children) == 3
    assert attrs(top)["gen_ai.agent.id"] == attrs(top)["fleet.node_id"]
    assert [s.name for s in tree.children(top)] == ["iteration 1", "iteration 2"]
    (cell,) = [s for s in tree.children(tree.children(top)[0])
               if s.name == "execute_tool python"]
    assert attrs(cell)["gen_ai.tool.name"] == "python"
    assert "rlm_query_batched" in attrs(cell)["fleet.inputs"]
    for child in children:  # each child RLM under the code cell that started it
        assert tree.parent(child) is cell
        (iteration,) = tree.children(child)
        (child_cell,) = [s for s in tree.children(iteration) if s.name == "execute_tool python"]
        assert [s.name for s in tree.children(child_cell)] == ["chat sub"]

    chats = tree.named("chat ")
    assert len(chats) == out.usage.calls == 8
    for chat in chats:
        a = attrs(chat)
        assert chat.kind == chat.SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == chat.name.removeprefix("chat ")
        assert a["gen_ai.usage.input_tokens"] == a["fleet.prompt_tokens"] > 0
        assert a["gen_ai.usage.output_tokens"] == a["fleet.completion_tokens"] > 0
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert "fleet.inputs" not in a and "fleet.outputs" not in a  # no content: no opt-in
        parent = tree.parent(chat)
        assert parent.start_time_unix_nano <= chat.start_time_unix_nano
        assert chat.end_time_unix_nano <= parent.end_time_unix_nano
    assert sum(attrs(c)["gen_ai.usage.input_tokens"] for c in chats) == out.usage.prompt_tokens


async def test_a_chat_turn_is_exported_when_it_ends(scripted_lm, receiver, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    server = scripted_lm([COUNT_NEEDLES,
                          *ask_then_delegate_rules("How many needles?", "500 needles, x=42.")])
    service = SessionService(settings_for(server, receiver.url, data_dir=tmp_path,
                                          delegate_chars=1000))
    await service.open()
    try:
        session = await service.create_session("needles")
        await service.add_document(session.id, "big.txt", ("hay needle " * 500).encode())
        live = await service.send(session.id, "how many needles?")
        assert (await live.done).status == "waiting"
        live = await service.reply(live.turn_id, "big.txt")
        assert (await live.done).answer == "500 needles, x=42."
        turn = await service.store.turns.get(live.turn_id)
    finally:
        await service.close()  # sends what is still queued
    assert receiver.spans, "nothing was exported"
    tree = Spans(receiver.spans)
    root = tree.root()
    a = attrs(root)
    assert (a["fleet.turn_id"], a["gen_ai.conversation.id"]) == (turn.id, session.id)
    steps = [s for s in tree.children(root) if s.name.startswith("execute_tool")]
    assert [s.name for s in steps] == ["execute_tool ask_user", "execute_tool rlm_query",
                                       "execute_tool python", "execute_tool finish"]
    assert [e.name for e in steps[0].events] == ["ask_user"]
    (rlm,) = tree.named("invoke_agent rlm")
    assert tree.parent(rlm) is steps[1]
    assert "gen_ai.input.messages" not in attrs(root)
    chats = tree.named("chat ")
    assert len(chats) == turn.usage["calls"]
    call_ids = {attrs(c).get("fleet.call_id") for c in chats}
    assert None not in call_ids and len(call_ids) == len(chats)
    for chat in chats:  # the opt-in: each call's messages, from the call store
        sent = json.loads(attrs(chat)["gen_ai.input.messages"])
        got = json.loads(attrs(chat)["gen_ai.output.messages"])
        assert sent[0]["role"] == "system" and sent[-1]["parts"][0]["type"] == "text"
        assert got[0]["role"] == "assistant" and got[0]["parts"][0]["content"]
        assert json.loads(attrs(chat)["fleet.inputs"])["prompt"]  # the previews too


async def test_an_unreachable_collector_never_fails_the_turn(scripted_lm, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # the standard variable, honoured
    server = scripted_lm(quick("hello", "hi"))
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]  # nothing listens there any more
    service = SessionService(settings_for(server, f"http://127.0.0.1:{port}", data_dir=tmp_path))
    await service.open()
    try:
        session = await service.create_session("t")
        live = await service.send(session.id, "hello")
        assert (await live.done).answer == "hi"
        assert (await service.store.turns.get(live.turn_id)).status == "ok"
    finally:
        started = time.monotonic()
        await service.close()  # gives up on the queued spans within the exporter's timeout
    assert time.monotonic() - started < 4


def test_fleet_run_exports_before_it_exits(tmp_path, scripted_lm, receiver):
    from test_cli_run import fleet_run, step

    server = scripted_lm([step(1, "print(len(context))\nSUBMIT(answer='forty-two')")])
    (tmp_path / "doc.txt").write_text("some context")
    done = fleet_run(tmp_path, server, "what is it?", "--context", "doc.txt",
                     env={"FLEET_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                          "OTEL_SERVICE_NAME": "nightly-batch"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "forty-two\n"
    tree = Spans(receiver.spans)  # sent before the process left
    root = tree.root()
    assert root.name == "invoke_agent fleet" and attrs(root)["fleet.status"] == "ok"
    service = {kv.key: kv.value.string_value for kv in receiver.resources[0].attributes}
    assert service["service.name"] == "nightly-batch"  # the standard variable
    (rlm,) = tree.named("invoke_agent rlm")
    (chat,) = tree.named("chat ")
    assert tree.parent(tree.parent(chat)).span_id == rlm.span_id  # chat in iteration 1
