"""What `tracing` configures: where spans go (OTLP over gRPC or HTTP), with which headers, how many requests are
sampled, under which service name. Pure data; Envoy's tracer and the processor's exporter are both built from it."""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOLS = ("grpc", "http")
OTLP_TRACES_PATH = "/v1/traces"  # OTLP/HTTP: where a collector takes spans


@dataclass(frozen=True, slots=True)
class TracingPolicy:
    endpoint: str  # scheme://host:port, e.g. http://collector:4317
    host: str
    port: int
    tls: bool  # https: the collector is reached with TLS (system CA, SNI = host)
    protocol: str = "grpc"  # grpc (OTLP/gRPC) or http (OTLP/HTTP, protobuf)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold a collector's token
    sample: float = 1.0  # the fraction of requests traced (a client's sampled traceparent is kept either way)
    service_name: str = "extproc"

    @property
    def http_url(self) -> str:
        """Where OTLP/HTTP posts spans."""
        return self.endpoint.rstrip("/") + OTLP_TRACES_PATH
