"""An OTLP trace receiver: the collector's TraceService (opentelemetry-proto) on 127.0.0.1, keeping every span it is
sent, with the metadata each export came with."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

from tests.waits import eventually


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    kind: int
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver(pb_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.metadata: list[dict[str, str]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def Export(self, request: pb.ExportTraceServiceRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                spans += [Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                               str(resource.get("service.name", "")), s.kind,
                               {a.key: _value(a.value) for a in s.attributes}) for s in scope.spans]
        with self._lock:
            self._spans += spans
            self.metadata.append(dict(context.invocation_metadata()))
        return pb.ExportTraceServiceResponse()

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, what: str, found: Any) -> list[Span]:
        """The spans once `found(spans)` holds (Envoy and the processor export in batches)."""
        return eventually(lambda: self.spans if found(self.spans) else None, what)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._server.stop(0)
