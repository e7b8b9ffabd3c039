"""Clusters: the processor (gRPC over HTTP/2) and one per provider (TLS with SNI, SAN and CA checks for
https, plain HTTP for a loopback base_url)."""

from __future__ import annotations

import ipaddress
from typing import Any

from extproc.bootstrap.failover import RELAY_CLUSTER, circuit_breakers, provider_filters
from extproc.bootstrap.names import GRPC_LIMIT_SLACK, PROCESSOR_CLUSTER, T, provider_cluster_name, socket
from extproc.core.providers import ProviderSpec
from extproc.core.settings import Address, Settings


def processor_cluster(settings: Settings) -> dict[str, Any]:
    host = settings.processor.host
    cluster: dict[str, Any] = {
        "name": PROCESSOR_CLUSTER,
        "type": _discovery_type(host, settings.workers),
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": settings.max_request_bytes + GRPC_LIMIT_SLACK,
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
        "load_assignment": _all_of(PROCESSOR_CLUSTER, settings.processor_addresses),
    }
    if settings.workers > 1:  # a worker that died gets no streams until it serves again (gRPC health service)
        cluster["health_checks"] = [{"timeout": "0.5s", "interval": "0.5s", "unhealthy_threshold": 1,
                                     "healthy_threshold": 1, "grpc_health_check": {}}]
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}  # none healthy: fail closed
    return cluster


def relay_cluster(settings: Settings) -> dict[str, Any]:
    """The processor's stream relay (plain HTTP/1.1 on processor.relay_port), with a provider's upstream
    filters: a login's retry after a 401 is refreshed here too."""
    host = settings.relay.host
    cluster: dict[str, Any] = {
        "name": RELAY_CLUSTER,
        "type": _discovery_type(host, settings.workers),
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": settings.max_request_bytes,
        "circuit_breakers": circuit_breakers(settings),
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "http_filters": provider_filters(settings),
        }},
        "load_assignment": _all_of(RELAY_CLUSTER, settings.relay_addresses),
    }
    if settings.workers > 1:  # a restarting worker's relay gets no attempts (they would cool healthy credentials)
        cluster["health_checks"] = [{"timeout": "0.5s", "interval": "0.5s", "unhealthy_threshold": 1,
                                     "healthy_threshold": 1, "tcp_health_check": {}}]
    return cluster


def provider_cluster(provider: ProviderSpec, settings: Settings) -> dict[str, Any]:
    limit, ca_file = settings.max_request_bytes, settings.ca_file
    upstream = provider.upstream
    name = provider_cluster_name(provider.name)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(upstream.host) else "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": limit,
        "circuit_breakers": circuit_breakers(settings),  # long streams: more than Envoy's 1024 at once
        "load_assignment": _endpoints(name, upstream.host, upstream.port),
    }
    protocol: dict[str, Any] = {"@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions"}
    if upstream.tls:
        protocol["auto_config"] = {"http2_protocol_options": {}, "http_protocol_options": {}}
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": upstream.host,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "validation_context": {
                    "trusted_ca": {"filename": ca_file},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": upstream.host}}],
                },
            },
        }}
    else:
        protocol["explicit_http_config"] = {"http_protocol_options": {}}
    protocol["http_filters"] = provider_filters(settings)
    cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol}
    return cluster


def _all_of(cluster: str, addresses: tuple[Address, ...]) -> dict[str, Any]:
    """Every worker: Envoy spreads streams across them (round robin)."""
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": socket(a.host, a.port)}} for a in addresses]}]}


def _endpoints(cluster: str, host: str, port: int) -> dict[str, Any]:
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(host, port)}}]}]}


def _discovery_type(host: str, endpoints: int) -> str:
    return "STATIC" if _is_ip(host) else "LOGICAL_DNS" if endpoints == 1 else "STRICT_DNS"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
