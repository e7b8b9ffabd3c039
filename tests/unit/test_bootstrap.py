from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from extproc.bootstrap import PROCESSOR_CLUSTER, build_bootstrap, provider_cluster_name, render_bootstrap
from extproc.bootstrap.failover import ATTEMPTS_CLUSTER
from extproc.core.headers import PROVIDER_HEADER
from extproc.request.plan import listener_name
from tests.unit.helpers import provider, settings

LIMIT = 5 * 1024 * 1024
SETTINGS = settings(
    providers={
        "local": provider({"openai": "/v1"}, "k", base_url="http://127.0.0.1:8080"),
        "corp": provider({"openai": "/v1"}, base_url="https://llm.corp.example:8443/api"),
    },
    processor={"address": "127.0.0.1", "port": 50099},
    listen={"address": "0.0.0.0", "port": 18000},
    clients={"require_key": False},
    max_request_bytes=LIMIT,
    ca_file="/tmp/ca.pem",
)
BOOT = build_bootstrap(SETTINGS)
CLUSTERS = {c["name"]: c for c in BOOT["static_resources"]["clusters"]}
LISTENER = BOOT["static_resources"]["listeners"][0]
INNER = {li["name"]: li for li in BOOT["static_resources"]["listeners"][1:]}
HCM = LISTENER["filter_chains"][0]["filters"][0]["typed_config"]
ROUTES = HCM["route_config"]["virtual_hosts"][0]["routes"]
FILTERS = {f["name"]: f["typed_config"] for f in HCM["http_filters"]}


def protocol_options(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]


def endpoint_address(cluster: dict[str, Any]) -> dict[str, Any]:
    lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    return lb["endpoint"]["address"]["socket_address"]


def inner_route(name: str, boot: dict[str, Any] = BOOT) -> dict[str, Any]:
    """The route of the internal listener that attempts to this provider go through."""
    (listener,) = [li for li in boot["static_resources"]["listeners"] if li["name"] == listener_name(name)]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    login_stream, login_route, stream, route, *refusals = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert login_route["route"]["cluster"] == route["route"]["cluster"]  # the same, with a 401 retried
    assert login_stream["route"]["cluster"] == stream["route"]["cluster"] == "relay"  # streamed answers
    # an attempt refused or planned for another provider goes nowhere: a 503 per client API, OpenAI's last
    assert [r["direct_response"]["status"] for r in refusals] == [503, 503, 503]
    assert "headers" not in refusals[-1]["match"]
    assert json.loads(refusals[0]["direct_response"]["body"]["inline_string"])["type"] == "error"  # Anthropic's
    return dict(route)


def test_one_cluster_per_provider_plus_the_processor_and_the_attempts():
    expected = {provider_cluster_name(p) for p in SETTINGS.providers} | {PROCESSOR_CLUSTER, ATTEMPTS_CLUSTER, "relay"}
    assert set(CLUSTERS) == expected
    assert len(BOOT["static_resources"]["clusters"]) == len(expected)  # no duplicates


@pytest.mark.parametrize("name", ["corp", "openai", "anthropic", "gemini", "groq", "mistral"])
def test_https_provider_gets_tls_with_sni_and_san(name):
    upstream = SETTINGS.providers[name].upstream
    cluster = CLUSTERS[provider_cluster_name(name)]
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == upstream.host
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": upstream.host}}]
    assert validation["trusted_ca"] == {"filename": "/tmp/ca.pem"}
    assert cluster["type"] == "LOGICAL_DNS"
    assert endpoint_address(cluster) == {"address": upstream.host, "port_value": upstream.port}
    assert "http2_protocol_options" in protocol_options(cluster)["auto_config"]


def test_custom_port_and_path_on_https_provider():
    assert endpoint_address(CLUSTERS["provider_corp"]) == {"address": "llm.corp.example", "port_value": 8443}
    assert inner_route("corp")["route"]["host_rewrite_literal"] == "llm.corp.example:8443"


def test_http_loopback_provider_is_plain():
    cluster = CLUSTERS["provider_local"]
    assert "transport_socket" not in cluster
    assert cluster["type"] == "STATIC"
    assert endpoint_address(cluster) == {"address": "127.0.0.1", "port_value": 8080}
    assert protocol_options(cluster)["explicit_http_config"] == {"http_protocol_options": {}}


def test_planned_requests_go_to_the_attempts_cluster_with_the_retry_policy():
    (route,) = [r for r in ROUTES if r["name"] == "attempts"]
    assert route["match"]["headers"] == [{"name": PROVIDER_HEADER, "present_match": True}]
    assert route["route"]["cluster"] == ATTEMPTS_CLUSTER
    assert route["route"]["timeout"] == "0s"  # no overall timeout: per-try first byte, then the idle timeout
    breakers = CLUSTERS[ATTEMPTS_CLUSTER]["circuit_breakers"]["thresholds"][0]
    assert breakers["max_retries"] == breakers["max_requests"] == SETTINGS.max_connections * 10  # reloads may add
    retry = route["route"]["retry_policy"]
    assert "retriable_status_codes" not in retry  # each request says which: failover reloads without Envoy
    assert retry["num_retries"] == 2 and retry["per_try_timeout"] == "300s"
    # and a provider's failure its listener answered (a header names it), whatever failover.statuses holds
    assert set(retry["retry_on"].split(",")) == {"connect-failure", "reset", "retriable-headers"}
    assert retry["retriable_headers"] == [{"name": "x-extproc-failure", "present_match": True}]


@pytest.mark.parametrize("name", ["local", "corp", "openai", "mistral"])
def test_each_provider_is_an_attempts_endpoint_behind_its_own_internal_listener(name):
    route = inner_route(name)
    assert route["route"]["cluster"] == provider_cluster_name(name)
    assert route["route"]["host_rewrite_literal"] == SETTINGS.providers[name].upstream.authority
    assert route["match"]["headers"] == [{"name": PROVIDER_HEADER, "string_match": {"exact": name}}]
    assert PROVIDER_HEADER in route["request_headers_to_remove"]  # the gateway's own headers stay here
    endpoints = CLUSTERS[ATTEMPTS_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    (endpoint,) = [e for e in endpoints if e["metadata"]["filter_metadata"]["extproc"]["provider"] == name]
    assert endpoint["endpoint"]["address"]["envoy_internal_address"]["server_listener_name"] == listener_name(name)
    assert INNER[listener_name(name)]["per_connection_buffer_limit_bytes"] == LIMIT


def test_unrouted_requests_are_refused_last():
    last = ROUTES[-1]
    assert "headers" not in last["match"]
    assert last["direct_response"]["status"] == 500
    # /healthz is Envoy's own answer, and a body no decompressor reads is refused before the processor sees it
    assert all("direct_response" not in r for r in ROUTES[:-1] if r["name"] not in ("healthz", "undecodable"))


def test_a_body_no_decompressor_reads_is_refused_with_415_before_the_processor():
    (route,) = [r for r in ROUTES if r["name"] == "undecodable"]
    assert route["direct_response"]["status"] == 415
    assert route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
    assert [r["name"] for r in ROUTES].index("undecodable") < [r["name"] for r in ROUTES].index("attempts")
    present, readable = route["match"]["headers"]
    assert present == {"name": "content-encoding", "present_match": True} and readable["invert_match"] is True
    pattern = re.compile(readable["string_match"]["safe_regex"]["regex"])
    assert all(pattern.fullmatch(c) for c in ("gzip", "GZIP", "br", "zstd", "identity"))
    assert not any(pattern.fullmatch(c) for c in ("deflate", "compress", "gzip, br", "x-gzip"))


def test_request_bodies_are_inflated_before_ext_proc_and_answers_never():
    names = [f["name"] for f in HCM["http_filters"]]
    decompressors = [f["typed_config"] for f in HCM["http_filters"] if "decompressor" in f["name"]]
    assert names.index("envoy.filters.http.ext_proc") == len(decompressors) == 3
    assert {d["decompressor_library"]["name"] for d in decompressors} == {"gzip", "br", "zstd"}
    for d in decompressors:
        assert d["request_direction_config"]["common_config"]["enabled"]["default_value"] is True
        assert d["response_direction_config"]["common_config"]["enabled"]["default_value"] is False


def test_ext_proc_fails_closed():
    ext_proc = FILTERS["envoy.filters.http.ext_proc"]
    assert ext_proc["failure_mode_allow"] is False
    assert ext_proc["grpc_service"]["envoy_grpc"]["cluster_name"] == PROCESSOR_CLUSTER
    assert ext_proc["grpc_service"]["envoy_grpc"]["max_receive_message_length"] > LIMIT
    assert ext_proc["processing_mode"]["request_body_mode"] == "BUFFERED"
    # only the request decompressors come first: they inflate the body, and nothing goes upstream past ext_proc
    first = next(f["name"] for f in HCM["http_filters"] if "decompressor" not in f["name"])
    assert first == "envoy.filters.http.ext_proc"
    assert HCM["http_filters"][-1]["name"] == "envoy.filters.http.router"


def test_buffer_limit_is_max_request_bytes():
    assert LISTENER["per_connection_buffer_limit_bytes"] == LIMIT
    for name in SETTINGS.providers:
        assert CLUSTERS[provider_cluster_name(name)]["per_connection_buffer_limit_bytes"] == LIMIT
    assert CLUSTERS[PROCESSOR_CLUSTER]["per_connection_buffer_limit_bytes"] > LIMIT  # body plus framing


def test_processor_cluster_is_http2_at_the_configured_address():
    cluster = CLUSTERS[PROCESSOR_CLUSTER]
    assert protocol_options(cluster)["explicit_http_config"] == {"http2_protocol_options": {}}
    assert endpoint_address(cluster) == {"address": "127.0.0.1", "port_value": 50099}
    assert cluster["type"] == "STATIC"


def test_listener_and_admin_addresses():
    assert LISTENER["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18000}
    assert BOOT["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}


def test_processor_by_hostname_uses_dns():
    boot = build_bootstrap(settings(processor={"address": "localhost", "port": 50051}))
    (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == PROCESSOR_CLUSTER]
    assert cluster["type"] == "LOGICAL_DNS"


def test_render_is_the_same_data_as_yaml():
    assert yaml.safe_load(render_bootstrap(SETTINGS)) == BOOT


def test_ipv6_loopback_authority_is_bracketed():
    s = settings(providers={"v6": provider({"openai": "/v1"}, base_url="http://[::1]:8080")})
    assert inner_route("v6", build_bootstrap(s))["route"]["host_rewrite_literal"] == "[::1]:8080"
