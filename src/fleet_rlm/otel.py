"""OpenTelemetry: a finished turn (or `fleet run`) exported as OTLP spans.

The spans are the MLflow trace's (`tracing.build_tree`, drawn from the one fold of the events),
with the OpenTelemetry GenAI semantic conventions' names and attributes, so Langfuse, Phoenix,
Jaeger or any OTLP collector shows them:

    invoke_agent fleet              the turn (gen_ai.operation.name invoke_agent)
      execute_tool <tool>           an agent step: the call that chose the tool, then the tool
        invoke_agent rlm            an RLM node (gen_ai.agent.id: its node id)
          iteration K               fleet.* attributes only (no convention)
            chat <model>            a model call: gen_ai.request.model, gen_ai.usage.*, ...
            execute_tool python     the code cell; its llm_query calls and child RLMs inside

Enabled by `FLEET_OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base URL, as the standard
`OTEL_EXPORTER_OTLP_ENDPOINT`; `/v1/traces` is added). Everything else (headers, timeout,
compression, certificates, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) comes from the
standard `OTEL_*` variables, read by the SDK. Spans leave in the SDK's batch processor's
thread: a collector that is down never slows a turn. The SDK and the OTLP/HTTP exporter are an
extra (`pip install 'fleet-rlm[otel]'`), imported only when export is configured.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .config import Settings
from .events import Event
from .tracing import Span, build_tree

log = logging.getLogger(__name__)
TRACES_PATH = "/v1/traces"
AGENT_NAMES = {"turn": "fleet", "rlm": "rlm"}
CallRecord = Callable[[str], dict[str, Any] | None]  # call id -> the call store's record

_lock = threading.Lock()
_providers: dict[str, Any] = {}  # endpoint -> TracerProvider, one per process


def import_otel() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ModuleNotFoundError:
        raise ImportError("OpenTelemetry export needs the otel extra: "
                          "pip install 'fleet-rlm[otel]'") from None
    return sdk_trace


def traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _provider(endpoint: str) -> Any:
    sdk_trace = import_otel()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    url = traces_url(endpoint)
    with _lock:
        provider = _providers.get(url)
        if provider is None:
            # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without
            # a name from them, ours replaces the SDK's "unknown_service".
            resource = Resource.create()
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": "fleet-rlm"}))
            provider = sdk_trace.TracerProvider(resource=resource)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
            _providers[url] = provider
    return provider


def export_events(settings: Settings, events: Iterable[Event], *, name: str = "turn",
                  attributes: dict[str, Any] | None = None, wait: bool = False,
                  record: CallRecord | None = None) -> str | None:
    """Export one turn's or run's events as a trace; returns its trace id (hex), or None
    when no endpoint is configured. `wait`: return once the spans are sent (or the exporter
    gave up), for a process about to leave. `record`: a kept call by its id; with
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true (the GenAI instrumentations'
    opt-in), model call spans carry their messages (`gen_ai.input.messages`,
    `gen_ai.output.messages`)."""
    if not settings.otel_exporter_otlp_endpoint:
        return None
    provider = _provider(settings.otel_exporter_otlp_endpoint)
    root = build_tree(events, name)
    root.attributes.update(attributes or {})
    if record is not None and _capture_content():
        _add_messages(root, record)
    tracer = provider.get_tracer("fleet_rlm")
    trace_id = _emit(tracer, root, None)
    if wait:
        provider.force_flush()
    return trace_id


def _capture_content() -> bool:
    flag = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return flag.strip().lower() in ("true", "1", "yes")


def _add_messages(span: Span, record: CallRecord) -> None:
    for each in span.walk():
        call_id = each.attributes.get("fleet.call_id")
        kept = record(call_id) if each.kind == "lm" and call_id else None
        if kept is None:
            continue
        each.attributes["gen_ai.input.messages"] = _json([
            {"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]}
            for m in kept["messages"]])
        if kept.get("reply") is not None:
            each.attributes["gen_ai.output.messages"] = _json([
                {"role": "assistant", "parts": [{"type": "text", "content": kept["reply"]}],
                 "finish_reason": kept.get("finish_reason") or "stop"}])


def record_export(settings: Settings, events: Iterable[Event], **kwargs: Any) -> str | None:
    """`export_events` for callers that must not fail on it: None (logged) on any failure."""
    try:
        return export_events(settings, events, **kwargs)
    except Exception:  # an unreachable or misconfigured collector never fails a turn
        log.exception("the OpenTelemetry trace was not exported")
        return None


def shutdown() -> None:
    """Send what is still queued and stop the exporters (the service's close)."""
    with _lock:
        providers = list(_providers.values())
        _providers.clear()
    for provider in providers:
        provider.shutdown()


def _emit(tracer: Any, span: Span, parent: Any) -> str:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    context = trace.set_span_in_context(parent) if parent is not None else None
    name, attributes = _named(span)
    live = tracer.start_span(name, context=context, start_time=_ns(span.start),
                             kind=SpanKind.CLIENT if span.kind == "lm" else SpanKind.INTERNAL,
                             attributes=attributes)
    for note, ts, values in span.notes:
        live.add_event(note, attributes=_flat(values), timestamp=_ns(ts))
    for child in span.children:
        _emit(tracer, child, live)
    if span.error:
        live.set_status(Status(StatusCode.ERROR, str(span.attributes.get("fleet.error") or "")))
    live.end(end_time=_ns(span.end if span.end is not None else span.start))
    return format(live.get_span_context().trace_id, "032x")


def _named(span: Span) -> tuple[str, dict[str, Any]]:
    """The span's name and attributes by the GenAI conventions, with ours (fleet.*) kept."""
    ours = _flat({k: v for k, v in span.attributes.items() if not k.startswith("mlflow.")})
    genai_messages: dict[str, Any] = {
        k: ours.pop(k) for k in ("gen_ai.input.messages", "gen_ai.output.messages") if k in ours}
    # A model call's prompt and reply (even their previews) go out only with the opt-in.
    if span.kind != "lm" or _capture_content():
        if span.inputs:
            ours["fleet.inputs"] = _json(span.inputs)
        if span.outputs:
            ours["fleet.outputs"] = _json(span.outputs)
    a = span.attributes
    if span.kind in ("turn", "rlm"):
        agent = AGENT_NAMES[span.kind]
        genai: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent",
                                 "gen_ai.agent.name": agent}
        if a.get("fleet.node_id"):
            genai["gen_ai.agent.id"] = a["fleet.node_id"]
        if a.get("fleet.session_id"):
            genai["gen_ai.conversation.id"] = a["fleet.session_id"]
        return f"invoke_agent {agent}", {**ours, **genai}
    if span.kind in ("step", "tool", "code"):
        tool = "python" if span.kind == "code" else str(a.get("fleet.tool") or "tool")
        used = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                "gen_ai.tool.type": "function"}
        return f"execute_tool {tool}", {**ours, **used}
    if span.kind == "lm":
        model = str(a.get("fleet.model") or "")
        provider, _, requested = model.rpartition("/")
        call: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": requested or model,
            "gen_ai.response.model": requested or model,
            "gen_ai.provider.name": provider or "openai",
            "gen_ai.usage.input_tokens": int(a.get("fleet.prompt_tokens") or 0),
            "gen_ai.usage.output_tokens": int(a.get("fleet.completion_tokens") or 0)}
        if a.get("fleet.finish_reason"):
            call["gen_ai.response.finish_reasons"] = [str(a["fleet.finish_reason"])]
        if a.get("fleet.error"):
            call["error.type"] = str(a["fleet.error"]).split(":", 1)[0]
        return f"chat {requested or model}", {**ours, **call, **genai_messages}
    return span.name, ours


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute values OTLP carries: scalars and lists of them; the rest as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        scalars = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if isinstance(value, str | bool | int | float) or scalars:
            flat[key] = value
        else:
            flat[key] = _json(value)
    return flat


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
