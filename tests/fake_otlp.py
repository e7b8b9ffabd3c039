"""An OTLP trace receiver: the collector's TraceService (opentelemetry-proto) on 127.0.0.1, keeping every span it is
sent, with the metadata each export came with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc

from tests.fakes import Server, write_whole
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


def _http_server(post: Callable[[str, dict[str, str], bytes], None]) -> Server:
    """OTLP/HTTP: protobuf posted whole or chunked (Envoy's exporter sends it chunked)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()  # the empty line after the last chunk
            return body

        def do_POST(self) -> None:  # noqa: N802
            post(self.path, {k.lower(): v for k, v in self.headers.items()}, self._body())
            write_whole(self, 200, {"content-type": "application/x-protobuf"},
                        pb.ExportTraceServiceResponse().SerializeToString())

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


def _spans(request: pb.ExportTraceServiceRequest) -> list[Span]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            spans += [Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                           str(resource.get("service.name", "")), s.kind,
                           {a.key: _value(a.value) for a in s.attributes}) for s in scope.spans]
    return spans


class OtlpReceiver(pb_grpc.TraceServiceServicer):  # type: ignore[misc]
    """OTLP/gRPC; `http=True`: OTLP/HTTP (protobuf posted to /v1/traces) instead."""

    def __init__(self, http: bool = False) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self.metadata: list[dict[str, str]] = []
        self.paths: list[str] = []
        if http:
            self._http: Server | None = _http_server(self._post)
            self._server = None
            self.port = self._http.server_address[1]
        else:
            self._http = None
            self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            pb_grpc.add_TraceServiceServicer_to_server(self, self._server)
            self.port = self._server.add_insecure_port("127.0.0.1:0")
            self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self._spans += _spans(pb.ExportTraceServiceRequest.FromString(body))
            self.metadata.append(headers)
            self.paths.append(path)

    def Export(self, request: pb.ExportTraceServiceRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        spans = _spans(request)
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
        if self._server is not None:
            self._server.stop(0)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
