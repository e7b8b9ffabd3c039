"""The `tracing` section: OpenTelemetry traces, off unless set (`tracing.endpoint`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from extproc.config.problems import keep
from extproc.config.values import choice, mapping, number, section, string
from extproc.core.errors import ConfigError
from extproc.core.tracing import PROTOCOLS, TracingPolicy

_KEYS = {"endpoint", "protocol", "headers", "sample", "service_name"}


def parse_tracing(raw: Any) -> TracingPolicy | None:
    """None (no tracer in Envoy, no exporter in the processor) unless the section names an endpoint."""
    if raw is None or raw is False:
        return None
    found = section(raw, "tracing", _KEYS)
    if "endpoint" not in found:
        raise ConfigError("tracing.endpoint: the OTLP collector to send spans to, e.g. http://collector:4317 "
                          "(set it, or remove the tracing section to trace nothing)")
    endpoint = string(found["endpoint"], "tracing.endpoint")
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"tracing.endpoint: expected http(s)://host:port (the collector's base address, no path), "
                          f"got {endpoint!r}")
    protocol = keep("grpc", choice, found.get("protocol", "grpc"), "tracing.protocol", PROTOCOLS)
    headers = keep({}, mapping, found.get("headers") or {}, "tracing.headers")
    for name, value in headers.items():
        if not isinstance(value, str) or not str(name):
            raise ConfigError(f"tracing.headers.{name}: expected a string value (e.g. a collector's token)")
    sample = keep(1.0, number, found.get("sample", 1.0), "tracing.sample", zero_ok=True)
    if sample > 1:
        raise ConfigError(f"tracing.sample: a fraction of requests from 0 to 1 (e.g. 0.1), got {sample:g}")
    service = keep("extproc", string, found.get("service_name", "extproc"), "tracing.service_name")
    default_port = 443 if parts.scheme == "https" else (4317 if protocol == "grpc" else 4318)
    return TracingPolicy(endpoint.rstrip("/"), parts.hostname, port or default_port, parts.scheme == "https", protocol,
                         tuple((str(k).lower(), v) for k, v in headers.items()), float(sample), service)
