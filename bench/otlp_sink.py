"""An OTLP/gRPC trace sink for the bench: the collector's TraceService (opentelemetry-proto) that takes every
export and keeps only a count, so a gateway with tracing on exports as it would to a collector."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc


class _Sink(pb_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans = 0

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (the service's name)
        self.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        return pb.ExportTraceServiceResponse()


def start_sink(port: int) -> tuple[grpc.Server, _Sink]:
    """The sink listening on 127.0.0.1:`port`; stop it with `.stop(None)`."""
    sink = _Sink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_TraceServiceServicer_to_server(sink, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, sink
