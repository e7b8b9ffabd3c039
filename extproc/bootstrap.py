"""The Envoy bootstrap, built as plain data from Settings (a pure function), printed as YAML.

Envoy does what it can natively: one cluster per provider (TLS with SNI, SAN and CA checks for
https, plain HTTP for a loopback base_url), routing on the provider header the processor sets,
response headers that tell the client what served it, and failing closed when the processor is down.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import yaml

from extproc.core.headers import MODEL_HEADER, PROCESSOR_TOKEN_HEADER, REASON_HEADER, ROUTE_HEADER
from extproc.core.providers import ProviderSpec
from extproc.core.settings import Settings

PROCESSOR_CLUSTER = "extproc"

CONTROL_SERVICES = ("extproc.v1.Models", "extproc.v1.Auth")
DESCRIPTOR_SET = Path(__file__).resolve().parent / "v1" / "extproc.pb"
_T = "type.googleapis.com/envoy."
_GRPC_LIMIT_SLACK = 4 * 1024 * 1024  # room for headers and framing around a body at the limit


def provider_cluster_name(provider: str) -> str:
    return f"provider_{provider}"


def render_bootstrap(settings: Settings) -> str:
    return yaml.safe_dump(build_bootstrap(settings), sort_keys=False, width=120)


def build_bootstrap(settings: Settings) -> dict[str, Any]:
    limit = settings.max_request_bytes
    return {
        "admin": {"address": _socket(settings.admin.host, settings.admin.port)},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": _T + "extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": settings.max_connections,
            },
        }]},
        "static_resources": {
            "listeners": [{
                "name": "llm",
                "address": _socket(settings.listen.host, settings.listen.port),
                "per_connection_buffer_limit_bytes": limit,
                "enable_reuse_port": False,  # a second gateway on the same port must fail, not share it
                "filter_chains": [{"filters": [_connection_manager(settings)]}],
            }],
            "clusters": [_processor_cluster(settings)]
            + [_provider_cluster(p, limit, settings.ca_file) for p in settings.providers.values()],
        },
    }


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _connection_manager(settings: Settings) -> dict[str, Any]:
    timeout = f"{settings.upstream_timeout:g}s"
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "llm",
            "always_set_request_id_in_response": True,
            "normalize_path": True,
            "merge_slashes": True,
            # An HTTP/2 stream buffers up to its window: keep that at the body limit so big bodies get 413.
            "http2_protocol_options": {"initial_stream_window_size": max(65535, settings.max_request_bytes)},
            "stream_idle_timeout": timeout,
            "request_timeout": "0s",
            "local_reply_config": _local_replies(),
            "route_config": {"name": "llm", "virtual_hosts": [{
                "name": "llm",
                "domains": ["*"],
                "routes": [_models_route(), _auth_route()]
                + [_provider_route(p, timeout) for p in settings.providers.values()]
                + [_unrouted()],
            }]},
            "http_filters": [_ext_proc_filter(settings), {
                "name": "envoy.filters.http.lua",
                "typed_config": {"@type": _T + "extensions.filters.http.lua.v3.Lua"},
            }, _transcoder_filter(), {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "extensions.filters.http.router.v3.Router"},
            }],
        },
    }


# Envoy's own replies (no healthy upstream, connect failure, timeout, body too large, processor down) come
# as plain text; clients expect their API's error envelope. Matched by Envoy's response flags and by 413
# and 502 (the processor-failure status), which the processor's own immediate responses never carry, so
# those (already in the right shape) stay as they are.
_ENVOY_FAILURE_FLAGS = ["UH", "UF", "UO", "NR", "URX", "UT", "UR", "UC", "DC", "LH"]
_GEMINI_PATH = r".*:(generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents).*"


_PROCESSOR_DOWN = "The gateway could not reach its processor; nothing was sent upstream."


def _local_replies() -> dict[str, Any]:
    def envelopes(message: str) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
        return [
            ({"name": ":path", "string_match": {"prefix": "/v1/messages"}},
             {"type": "error", "error": {"type": "api_error", "message": message}}),
            ({"name": ":path", "string_match": {"safe_regex": {"regex": _GEMINI_PATH}}},
             {"error": {"code": "%RESPONSE_CODE%", "message": message, "status": "UNAVAILABLE"}}),
            (None, {"error": {"message": message, "type": "server_error", "param": None,
                              "code": "%RESPONSE_CODE_DETAILS%"}}),
        ]

    def status(code: int) -> dict[str, Any]:
        equal = {"op": "EQ", "value": {"default_value": code, "runtime_key": "_"}}
        return {"status_code_filter": {"comparison": equal}}

    envoy_failure = {"or_filter": {"filters": [{"response_flag_filter": {"flags": _ENVOY_FAILURE_FLAGS}}, status(413)]}}
    mappers = []
    for failure, message in ((status(502), _PROCESSOR_DOWN), (envoy_failure, "%LOCAL_REPLY_BODY%")):
        for header, body in envelopes(message):
            match = {"and_filter": {"filters": [failure, {"header_filter": {"header": header}}]}} \
                if header else failure
            mappers.append({"filter": match, "body_format_override": {
                "json_format": body, "content_type": "application/json"}})
    return {"mappers": mappers}


def _ext_proc_filter(settings: Settings) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": _T + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": PROCESSOR_CLUSTER,
                    "max_receive_message_length": settings.max_request_bytes + _GRPC_LIMIT_SLACK,
                },
                **({"initial_metadata": [{"key": PROCESSOR_TOKEN_HEADER, "value": settings.processor_token}]}
                   if settings.processor_token else {}),
            },
            "failure_mode_allow": False,
            "status_on_error": {"code": 502},  # processor unreachable: a status only this failure uses
            "allow_mode_override": True,  # a Code Assist answer is unwrapped: its body is asked for per request
            "message_timeout": "5s",
            "processing_mode": {
                "request_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_header_mode": "SEND",
                "response_body_mode": "NONE",
                "response_trailer_mode": "SKIP",
            },
        },
    }


def _transcoder_filter() -> dict[str, Any]:
    """REST for the gateway's own gRPC services; requests that match none of their paths pass through."""
    return {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": _transcoder_config()}


def _transcoder_config(strict: bool = False) -> dict[str, Any]:
    """`strict` on the gateway's own routes: a path or method no service has is a 404/405, not a gRPC reset."""
    config: dict[str, Any] = {
        "@type": _T + "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor_bin": base64.b64encode(DESCRIPTOR_SET.read_bytes()).decode(),
        "services": list(CONTROL_SERVICES),
        "print_options": {"preserve_proto_field_names": True, "always_print_primitive_fields": True},
        "convert_grpc_status": True,
        "match_incoming_request_route": True,
        "url_unescape_spec": "ALL_CHARACTERS",  # ids like groq/openai/gpt-oss-20b arrive as %2F
        "ignore_unknown_query_parameters": True,  # OAuth redirects carry scope, authuser, prompt, …
    }
    if strict:
        config["request_validation_options"] = {"reject_unknown_method": True}
    return config


def _models_route() -> dict[str, Any]:
    """GET /v1/models… goes straight to the Models service: no ext_proc round trip."""
    return {
        "name": "models",
        "match": {"path_separated_prefix": "/v1/models",
                  "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "10s"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": {
                "@type": _T + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "disabled": True},
            "envoy.filters.http.lua": {
                "@type": _T + "extensions.filters.http.lua.v3.LuaPerRoute",
                "source_code": {"inline_string": _OPENAI_NOT_FOUND_LUA}},
        },
    }


# After the transcoder (filters encode in reverse), so it still saw grpc-status: HTTP clients need none of it.
_STRIP_GRPC_HEADERS = """\
  for _, name in ipairs({"grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding"}) do
    handle:headers():remove(name)
  end
"""
_WITHOUT_GRPC_HEADERS_LUA = "function envoy_on_response(handle)\n" + _STRIP_GRPC_HEADERS + "end\n"

# The transcoder prints a gRPC error as {"code":5,"message":"…","details":[]}; OpenAI clients expect
# {"error":{…}}. The message is already JSON-escaped, so it is moved as it is. Runs on the models route only.
_OPENAI_NOT_FOUND_LUA = """\
function envoy_on_response(handle)
""" + _STRIP_GRPC_HEADERS + """\
  if handle:headers():get(":status") ~= "404" then return end
  local body = handle:body()
  local message = string.match(body:getBytes(0, body:length()), '"message":"(.*)","details"') or "Not found."
  body:setBytes('{"error":{"message":"' .. message ..
    '","type":"invalid_request_error","param":"model","code":"model_not_found"}}')
  handle:headers():replace("content-type", "application/json")
end
"""


def _auth_route() -> dict[str, Any]:
    """/auth/… goes straight to the Auth service (its admin token is checked there)."""
    return {
        "name": "auth",
        "match": {"path_separated_prefix": "/auth"},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "180s"},  # finishing a Gemini login onboards
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": {
                "@type": _T + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "disabled": True},
            "envoy.filters.http.grpc_json_transcoder": _transcoder_config(strict=True),
            "envoy.filters.http.lua": {
                "@type": _T + "extensions.filters.http.lua.v3.LuaPerRoute",
                "source_code": {"inline_string": _WITHOUT_GRPC_HEADERS_LUA}},
        },
    }


def _provider_route(provider: ProviderSpec, timeout: str) -> dict[str, Any]:
    return {
        "name": provider.name,
        "match": {"prefix": "/", "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": provider.name}}]},
        "route": {
            "cluster": provider_cluster_name(provider.name),
            "host_rewrite_literal": provider.upstream.authority,
            "timeout": timeout,
        },
        "response_headers_to_add": [
            {"header": {"key": h, "value": f"%REQ({h})%"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for h in (ROUTE_HEADER, MODEL_HEADER, REASON_HEADER)
        ],
    }


def _unrouted() -> dict[str, Any]:
    """Reached only if the processor let a request through without choosing a provider: refuse it."""
    body = '{"error":{"message":"No provider was chosen for this request.","type":"server_error","code":"unrouted"}}'
    return {
        "name": "unrouted",
        "match": {"prefix": "/"},
        "direct_response": {"status": 500, "body": {"inline_string": body}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }


def _processor_cluster(settings: Settings) -> dict[str, Any]:
    host = settings.processor.host
    return {
        "name": PROCESSOR_CLUSTER,
        "type": "STATIC" if _is_ip(host) else "LOGICAL_DNS",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": settings.max_request_bytes + _GRPC_LIMIT_SLACK,
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
        "load_assignment": _endpoints(PROCESSOR_CLUSTER, host, settings.processor.port),
    }


def _provider_cluster(provider: ProviderSpec, limit: int, ca_file: str) -> dict[str, Any]:
    upstream = provider.upstream
    name = provider_cluster_name(provider.name)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(upstream.host) else "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": limit,
        "load_assignment": _endpoints(name, upstream.host, upstream.port),
    }
    protocol: dict[str, Any] = {"@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions"}
    if upstream.tls:
        protocol["auto_config"] = {"http2_protocol_options": {}, "http_protocol_options": {}}
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
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
    cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol}
    return cluster


def _endpoints(cluster: str, host: str, port: int) -> dict[str, Any]:
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}]}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
