"""The `tracing` section and what it puts in Envoy's bootstrap: nothing at all when off."""

from __future__ import annotations

import pytest

from extproc import tracing
from extproc.bootstrap import build_bootstrap
from extproc.config import parse_settings
from extproc.core.errors import ConfigError
from extproc.core.tracing import TracingPolicy
from tests.unit.helpers import settings


def _error(section: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings({"tracing": section}, {})
    return str(info.value)


def test_off_by_default_and_nothing_of_it_in_envoy():
    off = settings()
    assert off.tracing is None
    text = repr(build_bootstrap(off))
    assert "tracing" not in text and "opentelemetry" not in text and "otel_collector" not in text
    assert not tracing.on()


def test_a_section_is_parsed_with_defaults_by_protocol():
    grpc = settings(tracing={"endpoint": "http://collector:4317"}).tracing
    assert grpc == TracingPolicy("http://collector:4317", "collector", 4317, False)
    http = settings(tracing={"endpoint": "https://otel.example.com/", "protocol": "http", "sample": 0.25,
                             "service_name": "gw", "headers": {"Authorization": "Bearer t0ken"}}).tracing
    assert http is not None and (http.host, http.port, http.tls, http.http_url, http.sample, http.service_name) == (
        "otel.example.com", 443, True, "https://otel.example.com/v1/traces", 0.25, "gw")
    assert http.headers == (("authorization", "Bearer t0ken"),) and "t0ken" not in repr(http)


@pytest.mark.parametrize(("section", "fragment"), [
    ({}, "tracing.endpoint: the OTLP collector"),
    ({"endpoint": "collector:4317"}, "tracing.endpoint: expected http(s)://host:port"),
    ({"endpoint": "http://c:4318/v1/traces"}, "no path"),
    ({"endpoint": "http://c:4317", "protocol": "thrift"}, "tracing.protocol: 'thrift' is not one of grpc, http"),
    ({"endpoint": "http://c:4317", "sample": 2}, "tracing.sample: a fraction"),
    ({"endpoint": "http://c:4317", "headers": {"x": 1}}, "tracing.headers.x"),
    ({"endpoint": "http://c:4317", "exporter": "x"}, "tracing.exporter"),
])
def test_a_bad_section_names_the_key(section, fragment):
    assert fragment in _error(section)


@pytest.mark.parametrize(("protocol", "field", "options"), [
    ("grpc", "grpc_service", "http2_protocol_options"), ("http", "http_service", "http_protocol_options")])
def test_envoy_traces_the_listener_and_each_provider_listener(protocol, field, options):
    on = settings(tracing={"endpoint": "http://127.0.0.1:4317", "protocol": protocol, "sample": 0.5})
    boot = build_bootstrap(on)
    managers = [f["typed_config"] for listener in boot["static_resources"]["listeners"]
                for chain in listener["filter_chains"] for f in chain["filters"]]
    assert len(managers) == 1 + len(on.providers)  # the client's listener and each provider's
    for manager in managers:
        config = manager["tracing"]
        assert (config["random_sampling"], config["spawn_upstream_span"]) == ({"value": 50.0}, True)
        assert field in config["provider"]["typed_config"]
    (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == "otel_collector"]
    assert options in repr(cluster)


def test_a_tracing_change_needs_a_restart():
    from extproc.config.changes import compare
    change = compare(settings(), settings(tracing={"endpoint": "http://c:4317"}))
    assert change.needs_restart == ("tracing",)


def test_off_every_step_gets_the_shared_no_op():
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracing.parent_of({"traceparent": parent}) == ""  # nothing to carry: no span is ever made
    with tracing.span("extproc route", parent) as step:
        assert step is None
    assert tracing.span("a", parent) is tracing.span("b", parent)
