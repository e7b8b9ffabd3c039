"""Envoy's OpenTelemetry tracer (with `tracing` set): a span for the client's request and one per upstream attempt
on the listener, the same on each provider listener an attempt goes through, exported over OTLP (gRPC or HTTP) to
the collector's cluster. A client's W3C `traceparent` is continued. Without `tracing`, nothing of this is in the
bootstrap at all."""

from __future__ import annotations

from typing import Any

from extproc.bootstrap.names import T, socket
from extproc.core.headers import MODEL_HEADER, PROVIDER_HEADER, ROUTE_HEADER
from extproc.core.settings import Settings
from extproc.core.tracing import TracingPolicy

COLLECTOR_CLUSTER = "otel_collector"
_TIMEOUT = "2s"
# What Envoy can say of a request on its own span: what served it (the headers the processor, or a fast route, set
# on the request Envoy keeps; the last attempt's at the end), under the gen_ai semantic-convention names.
_SERVED_TAGS = (("gen_ai.provider.name", PROVIDER_HEADER), ("gen_ai.response.model", MODEL_HEADER),
                ("extproc.route", ROUTE_HEADER))


def connection_tracing(settings: Settings, operation: str) -> dict[str, Any]:
    """A connection manager's `tracing` (empty: tracing off). `operation` names its spans."""
    policy = settings.tracing
    if policy is None:
        return {}
    return {"tracing": {
        "provider": _provider(policy),
        "random_sampling": {"value": policy.sample * 100},
        "spawn_upstream_span": True,  # one span per upstream attempt, retries included
        "operation": operation,
        "custom_tags": [{"tag": tag, "request_header": {"name": header}} for tag, header in _SERVED_TAGS],
    }}


def _provider(policy: TracingPolicy) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": T + "config.trace.v3.OpenTelemetryConfig", "service_name": policy.service_name}
    if policy.protocol == "grpc":
        config["grpc_service"] = {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": _TIMEOUT,
                                  **({"initial_metadata": [{"key": k, "value": v} for k, v in policy.headers]}
                                     if policy.headers else {})}
    else:
        config["http_service"] = {"http_uri": {"uri": policy.http_url, "cluster": COLLECTOR_CLUSTER,
                                               "timeout": _TIMEOUT},
                                  "request_headers_to_add": [{"header": {"key": k, "value": v}}
                                                             for k, v in policy.headers]}
    return {"name": "envoy.tracers.opentelemetry", "typed_config": config}


def collector_cluster(settings: Settings) -> list[dict[str, Any]]:
    """The collector's cluster (none without tracing): HTTP/2 for OTLP/gRPC, HTTP/1.1 for OTLP/HTTP."""
    policy = settings.tracing
    if policy is None:
        return []
    protocol: dict[str, Any] = {"http2_protocol_options" if policy.protocol == "grpc" else "http_protocol_options": {}}
    cluster: dict[str, Any] = {
        "name": COLLECTOR_CLUSTER,
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": protocol}},
        "load_assignment": {"cluster_name": COLLECTOR_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": socket(policy.host, policy.port)}}]}]},
    }
    if policy.tls:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": policy.host,
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": settings.ca_file}}}}}
    return [cluster]
