"""The processor's OpenTelemetry spans, joined to the trace Envoy's tracer started (with `tracing` set).

Envoy samples and starts each request's trace; the processor only continues it. Each ext_proc stream arrives with
the W3C `traceparent` of Envoy's span for that gRPC call (in the stream's metadata), and the relay's request with
the one of the provider listener's upstream span, so every span here is a child in the request's one trace, and
sampled as its parent was (a parent not sampled: nothing recorded). The request's gen_ai span is made when its
usage record is written (the answer's end), with the record's figures as its attributes, never prompt or answer
text unless `log.bodies` consented to it.

Off (no `tracing`), `_TRACER` is None: no provider, no exporter, and every call here returns at that one check.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from extproc.core.tracing import TracingPolicy

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from extproc.usage.record import UsageRecord

log = logging.getLogger("extproc")
TRACEPARENT = "traceparent"
_TRACER: Tracer | None = None
_PROVIDER: TracerProvider | None = None
# gen_ai.operation.name by the client endpoint (the formats table's row names); any other is a chat.
_OPERATIONS = {"completions": "text_completion", "embeddings": "embeddings", "embedContent": "embeddings",
               "batchEmbedContents": "embeddings", "generateContent": "generate_content",
               "streamGenerateContent": "generate_content", "countTokens": "count_tokens",
               "count_tokens": "count_tokens"}
_NS = 1_000_000_000
_NO_SPAN: AbstractContextManager[None] = nullcontext()  # reusable: what every step gets with tracing off


def setup(policy: TracingPolicy | None) -> None:
    """This process's tracer and exporter (a worker calls it once it runs); nothing at all when tracing is off."""
    global _TRACER, _PROVIDER
    if policy is None:
        return
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: policy.service_name}),
                              sampler=ParentBased(ALWAYS_OFF))  # Envoy samples; a span without a parent is none
    provider.add_span_processor(BatchSpanProcessor(_exporter(policy), schedule_delay_millis=500))
    _PROVIDER, _TRACER = provider, provider.get_tracer("extproc")


def _exporter(policy: TracingPolicy) -> Any:
    headers = dict(policy.headers)
    if policy.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        return GrpcExporter(endpoint=policy.endpoint, insecure=not policy.tls, headers=headers, timeout=5)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    return HttpExporter(endpoint=policy.http_url, headers=headers, timeout=5)


def shutdown() -> None:
    """Send what is still batched (at the process's end)."""
    global _TRACER, _PROVIDER
    if _PROVIDER is not None:
        _PROVIDER.shutdown()
    _TRACER = _PROVIDER = None


def on() -> bool:
    return _TRACER is not None


def parent_of(headers: Mapping[str, str]) -> str:
    """The trace context a stream or request carries ("" when tracing is off or it carries none)."""
    return headers.get(TRACEPARENT, "") if _TRACER is not None else ""


def _context(traceparent: str) -> Context | None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent}) if traceparent else None


def span(name: str, traceparent: str, **attributes: Any) -> AbstractContextManager[Span | None]:
    """A span around a step of the request; off, or with no trace to join, a shared no-op (it gives None)."""
    if _TRACER is None or not traceparent:
        return _NO_SPAN
    return _span(_TRACER, name, traceparent, attributes)


@contextmanager
def _span(tracer: Tracer, name: str, traceparent: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
    with tracer.start_as_current_span(name, context=_context(traceparent), attributes=_kept(attributes)) as current:
        yield current


def note(current: Span | None, **attributes: Any) -> None:
    """Attributes learned during a step (nothing when it has no span)."""
    if current is not None:
        current.set_attributes(_kept(attributes))


def _kept(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k.replace("__", "."): v for k, v in attributes.items() if v is not None and v != ""}


def endpoint_of(path: str) -> str:
    """The client endpoint's row name for a request path ("" when it names none)."""
    from extproc.formats import match_endpoint
    found = match_endpoint(path)
    return found.name if found is not None else ""


def operation(endpoint: str) -> str:
    return _OPERATIONS.get(endpoint, "chat")


def request_span(rec: UsageRecord, traceparent: str, endpoint: str, start: float, end: float) -> None:
    """The request's gen_ai span, from its usage record: from the request's start to its answer's end."""
    tracer = _TRACER
    if tracer is None or not traceparent:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    op = operation(endpoint)
    usage = rec.usage
    attributes = _kept({
        "gen_ai.operation.name": op, "gen_ai.provider.name": rec.provider, "gen_ai.request.model": rec.requested,
        "gen_ai.response.model": rec.served, "gen_ai.usage.input_tokens": usage.input if usage else None,
        "gen_ai.usage.output_tokens": usage.output if usage else None,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read if usage else None,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write if usage else None,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning if usage else None,
        "extproc.cost_usd": rec.cost if usage else None, "extproc.client": rec.client, "extproc.route": rec.route,
        "extproc.attempts": rec.attempts, "extproc.outcome": rec.outcome, "http.response.status_code": rec.status,
        "extproc.streamed": rec.streamed, "extproc.credential": rec.credential,
        "error.type": None if rec.status < 400 else str(rec.status),
        **{f"extproc.{k}": v for k, v in rec.bodies}})  # with log.bodies only: the consent to show them
    current = tracer.start_span(f"{op} {rec.served or rec.requested}".strip(), context=_context(traceparent),
                                kind=SpanKind.CLIENT, attributes=attributes, start_time=int(start * _NS))
    if rec.status >= 400:
        current.set_status(Status(StatusCode.ERROR))
    current.end(end_time=int(end * _NS))
