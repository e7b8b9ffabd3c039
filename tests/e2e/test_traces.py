"""One OpenTelemetry trace per request, through a real Envoy, to an OTLP receiver the test runs: Envoy's spans for
the client's request and each attempt, the processor's for its decision, each later attempt's build and the
request's gen_ai span, all under one trace id; a client's `traceparent` continued; nothing exported when off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.fake_otlp import OtlpReceiver, Span
from tests.fakes import FakeProvider
from tests.waits import eventually

PROMPT = "the launch code is violet-42"  # never in a span without log.bodies
CLIENT_TRACE, CLIENT_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
ROOT, ATTEMPT = "gateway", "router attempts egress"  # Envoy's spans: the client's request, each upstream attempt


def _config(fakes: dict[str, FakeProvider], **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"tr-primary": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                                     "api_key": "k-tr-primary"},
                      "tr-backup": {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"},
                                    "api_key": "k-tr-backup"}},
        "models": [{"id": "tr-primary-model", "provider": "tr-primary", "input_price": 1.0, "output_price": 4.0},
                   {"id": "tr-backup-model", "provider": "tr-backup", "input_price": 1.0, "output_price": 4.0}],
        "fallbacks": {"tr-primary-model": ["tr-backup-model"]},
        "fast_path": False,
        "health": {"backoff_base": 0.001, "backoff_max": 0.001},
        **extra,
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], receiver: OtlpReceiver,
          make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(_config(fakes, tracing={
        "endpoint": receiver.endpoint, "headers": {"x-collector-token": "tok-traces-1"}}))


def _ask(stack: Stack, model: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/chat/completions", headers=headers or {},
                      json={"model": model, "messages": [{"role": "user", "content": PROMPT}]})


def _whole(receiver: OtlpReceiver, trace_id: str, *names: str) -> list[Span]:
    """The trace once every named span is in (Envoy and the processor each export in batches)."""
    def found(spans: list[Span]) -> bool:
        seen = {s.name for s in spans if s.trace_id == trace_id}
        return all(name in seen for name in names)
    receiver.wait_for(f"spans {names} of trace {trace_id}", found)
    return receiver.trace(trace_id)


def _trace_of(receiver: OtlpReceiver, request_id: str) -> str:
    """The trace id of the request Envoy's root span names by its x-request-id."""
    def root() -> list[Span]:
        return [s for s in receiver.spans if s.name == ROOT and s.attributes.get("guid:x-request-id") == request_id]
    return receiver.wait_for(f"the root span of {request_id}", lambda _: root()) and root()[0].trace_id


def test_a_failover_is_one_trace_with_two_attempts_and_the_served_model_on_its_root(stack, fakes, receiver):
    fakes["openai"].script(429, {"retry-after": "30"})
    answer = _ask(stack, "tr-primary-model")
    assert (answer.status_code, answer.headers["x-extproc-attempts"]) == (200, "2")
    trace_id = _trace_of(receiver, answer.headers["x-request-id"])
    spans = _whole(receiver, trace_id, ROOT, ATTEMPT, "extproc route", "extproc attempt", "chat tr-backup-model")
    (root,) = [s for s in spans if s.name == ROOT]
    assert root.parent_id == ""  # the client sent no traceparent: Envoy started the trace
    assert (root.attributes["gen_ai.response.model"], root.attributes["gen_ai.provider.name"],
            root.attributes["http.status_code"]) == ("tr-backup-model", "tr-backup", "200")
    attempts = sorted((s for s in spans if s.name == ATTEMPT), key=lambda s: s.attributes.get("retry.count", "0"))
    assert [(a.parent_id, a.attributes["http.status_code"], a.attributes["gen_ai.response.model"])
            for a in attempts] == [(root.span_id, "429", "tr-primary-model"), (root.span_id, "200", "tr-backup-model")]
    # each attempt's provider listener continued the trace under its attempt
    hops = {s.name: s for s in spans if s.name in ("provider_tr-primary", "provider_tr-backup")}
    assert {name: hop.parent_id for name, hop in hops.items()} == {
        "provider_tr-primary": attempts[0].span_id, "provider_tr-backup": attempts[1].span_id}
    # the processor's spans are in the same trace: the decision, the second attempt's build, the request's gen_ai
    (decision,) = [s for s in spans if s.name == "extproc route"]
    asked, planned = decision.attributes["gen_ai.request.model"], decision.attributes["extproc.planned_attempts"]
    assert (decision.service, asked, planned) == ("extproc", "tr-primary-model", 2)
    (built,) = [s for s in spans if s.name == "extproc attempt"]
    assert (built.attributes["extproc.attempt"], built.attributes["extproc.model"]) == (2, "tr-backup-model")
    (request,) = [s for s in spans if s.name == "chat tr-backup-model"]
    assert {k: request.attributes[k] for k in (
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "extproc.attempts", "extproc.route")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "tr-backup",
        "gen_ai.request.model": "tr-primary-model", "gen_ai.response.model": "tr-backup-model",
        "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 4,
        "extproc.attempts": 2, "extproc.route": "fallback:chain"}
    assert request.attributes["extproc.cost_usd"] == pytest.approx((3 * 1.0 + 4 * 4.0) / 1e6)
    assert "error.type" not in request.attributes
    # no prompt in any span, and no credential
    shown = repr([s.attributes for s in spans])
    assert PROMPT not in shown and "k-tr-" not in shown


def test_a_clients_traceparent_is_continued(stack, receiver):
    answer = _ask(stack, "tr-backup-model", {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert answer.status_code == 200
    spans = _whole(receiver, CLIENT_TRACE, ROOT, ATTEMPT, "extproc route", "chat tr-backup-model")
    rid = answer.headers["x-request-id"]
    (root,) = [s for s in spans if s.name == ROOT and s.attributes["guid:x-request-id"] == rid]
    assert root.parent_id == CLIENT_SPAN
    # and the collector was sent the configured headers, by Envoy and by the processor
    senders = {m.get("user-agent", "").split("/")[0] for m in receiver.metadata if m.get("x-collector-token")}
    assert {"OTel-OTLP-Exporter-Envoy", "OTel-OTLP-Exporter-Python"} <= senders
    listeners = httpx.get(stack.admin_url + "/config_dump", params={"resource": "static_listeners"}).text
    assert "OpenTelemetryConfig" in listeners  # what the test with tracing off finds missing


def test_a_refused_request_is_traced_with_its_error(stack, receiver):
    answer = _ask(stack, "no-such-model")
    assert answer.status_code == 404
    trace_id = _trace_of(receiver, answer.headers["x-request-id"])
    spans = _whole(receiver, trace_id, "extproc route", "chat no-such-model")
    (request,) = [s for s in spans if s.name == "chat no-such-model"]
    assert (request.attributes["error.type"], request.attributes["http.response.status_code"]) == ("404", 404)
    assert not [s for s in spans if s.name == ATTEMPT]  # nothing went upstream


def test_a_relayed_stream_is_traced_with_its_usage(stack, receiver):
    with httpx.stream("POST", f"{stack.url}/v1/chat/completions", json={
            "model": "tr-backup-model", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}) as answer:
        assert answer.status_code == 200
        answer.read()
    trace_id = _trace_of(receiver, answer.headers["x-request-id"])
    spans = _whole(receiver, trace_id, ROOT, "extproc route", "extproc relay", "chat tr-backup-model")
    (request,) = [s for s in spans if s.name == "chat tr-backup-model"]
    record = stack.usage_record(answer.headers["x-request-id"])  # the span says what the usage record says
    assert record["output_tokens"] > 0
    assert (request.attributes["extproc.streamed"], request.attributes["gen_ai.usage.output_tokens"],
            request.attributes["gen_ai.usage.input_tokens"]) == (True, record["output_tokens"], record["input_tokens"])
    assert PROMPT not in repr([s.attributes for s in spans])


def test_a_fast_request_is_traced_by_envoy_and_its_answers_log(fakes, make_stack):
    receiver = OtlpReceiver()
    try:
        caps = ["tools", "vision", "reasoning", "structured_output", "streaming"]
        config = _config(fakes, fast_path=True, fallbacks={}, tracing={"endpoint": receiver.endpoint})
        config["models"] = [{"id": "tr-fast-model", "provider": "tr-backup", "context_window": 100000,
                             "input_price": 1.0, "output_price": 4.0, "capabilities": caps}]
        stack = make_stack(config)
        assert _ask(stack, "tr-fast-model").headers["x-extproc-route"] == "direct"  # the full path makes it hot
        fast = eventually(lambda: (a := _ask(stack, "tr-fast-model")).headers["x-extproc-route"].endswith("fast")
                          and a, "a request goes fast")
        trace_id = _trace_of(receiver, fast.headers["x-request-id"])
        spans = _whole(receiver, trace_id, ROOT, ATTEMPT, "chat tr-fast-model")
        assert "extproc route" not in {s.name for s in spans}  # no message to the processor on the way
        (root,) = [s for s in spans if s.name == ROOT]
        assert root.attributes["gen_ai.response.model"] == "tr-fast-model"
        (request,) = [s for s in spans if s.name == "chat tr-fast-model"]  # from Envoy's answers log
        assert (request.attributes["gen_ai.usage.input_tokens"], request.attributes["gen_ai.usage.output_tokens"],
                request.attributes["gen_ai.request.model"]) == (3, 4, "tr-fast-model")
    finally:
        receiver.close()


def test_spans_go_over_otlp_http_too(fakes, make_stack):
    receiver = OtlpReceiver(http=True)
    try:
        stack = make_stack(_config(fakes, tracing={"endpoint": receiver.endpoint, "protocol": "http",
                                                   "headers": {"x-collector-token": "tok-traces-2"}}))
        answer = _ask(stack, "tr-backup-model")
        trace_id = _trace_of(receiver, answer.headers["x-request-id"])
        _whole(receiver, trace_id, ROOT, ATTEMPT, "extproc route", "chat tr-backup-model")
        assert set(receiver.paths) == {"/v1/traces"}
        senders = {m.get("user-agent", "").split("/")[0] for m in receiver.metadata
                   if m.get("x-collector-token") == "tok-traces-2"}
        assert {"OTel-OTLP-Exporter-Envoy", "OTel-OTLP-Exporter-Python"} <= senders
    finally:
        receiver.close()


def test_nothing_is_exported_with_tracing_off(fakes, make_stack):
    """Without `tracing`: no tracer in Envoy, and no exporter in the processor, even with OpenTelemetry's own
    environment pointing at a receiver (which would get the spans of any provider set up by default)."""
    quiet = OtlpReceiver()
    try:
        stack = make_stack(_config(fakes), env={"OTEL_EXPORTER_OTLP_ENDPOINT": quiet.endpoint,
                                                "OTEL_EXPORTER_OTLP_INSECURE": "true"})
        answer = _ask(stack, "tr-backup-model", {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
        assert answer.status_code == 200
        stack.usage_record(answer.headers["x-request-id"])  # the request has ended, its record written
        listeners, clusters = (httpx.get(stack.admin_url + "/config_dump", params={"resource": kind}).text
                               for kind in ("static_listeners", "static_clusters"))
        assert "OpenTelemetryConfig" not in listeners and '"tracing"' not in listeners  # no tracer in Envoy
        assert "otel_collector" not in clusters and "provider_tr-backup" in clusters
        assert stack.stop() == 0  # a processor flushes its batched spans as it stops: any would be sent by now
        assert quiet.spans == []
    finally:
        quiet.close()
