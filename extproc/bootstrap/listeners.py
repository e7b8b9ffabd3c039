"""The listener and its HTTP filter chain: request decompressors, ext_proc (fail-closed), Lua, the gRPC-JSON
transcoder, the router."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from extproc.bootstrap.failover import grpc_service, upstream_log
from extproc.bootstrap.fast import (
    answers_log,
    body_to_metadata,
    envoy_routes,
    lua_sources,
    route_source,
    scrub_forged,
    translated_mark,
)
from extproc.bootstrap.local_replies import PROCESSOR_DOWN_STATUS, local_reply_config
from extproc.bootstrap.names import (
    CONTROL_SERVICES,
    DESCRIPTOR_SET,
    LUA_FILTER,
    RECEIVED_AT,
    REQUEST_CODINGS,
    ROUTER_MODE,
    T,
    socket,
)
from extproc.bootstrap.routes import (
    attempts_response_headers,
    attempts_route,
    auth_route,
    console_routes,
    gemini_models_route,
    health_routes,
    models_routes,
    undecodable,
    unrouted,
)
from extproc.bootstrap.tracing import connection_tracing
from extproc.core.admission import MESSAGE_TIMEOUT
from extproc.core.headers import ATTEMPT_HEADER
from extproc.core.settings import Settings
from extproc.fast.routes import FastRoute
from extproc.request.plan import LB_NAMESPACE, PLAN_NAMESPACE


def listener(settings: Settings) -> dict[str, Any]:
    return {
        "name": "llm",
        "address": socket(settings.listen.host, settings.listen.port),
        "per_connection_buffer_limit_bytes": settings.max_request_bytes,
        "enable_reuse_port": False,  # a second gateway on the same port must fail, not share it
        "filter_chains": [{"filters": [_connection_manager(settings)]}],
    }


def _connection_manager(settings: Settings) -> dict[str, Any]:
    timeout = f"{settings.upstream_timeout:g}s"
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "llm",
            "always_set_request_id_in_response": True,
            "normalize_path": True,
            "merge_slashes": True,
            # An HTTP/2 stream buffers up to its window: keep that at the body limit so big bodies get 413.
            "http2_protocol_options": {"initial_stream_window_size": max(65535, settings.max_request_bytes)},
            "stream_idle_timeout": timeout,
            "request_timeout": "0s",
            "local_reply_config": local_reply_config(),
            **connection_tracing(settings, "gateway"),
            **({"rds": route_source(settings.fast_routes), "access_log": answers_log(settings)}
               if settings.fast_routes else {"route_config": route_configuration(settings)}),
            "http_filters": [*([scrub_forged(settings)] if settings.fast_routes else []), *request_decompressors(),
                             *([body_to_metadata(settings), translated_mark()] if settings.fast_routes else []),
                             _ext_proc_filter(settings), {
                "name": LUA_FILTER,
                "typed_config": {"@type": T + "extensions.filters.http.lua.v3.Lua",
                                 **({"source_codes": lua_sources()} if settings.fast_routes else {})},
            }, {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": _transcoder_config()}, {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": T + "extensions.filters.http.router.v3.Router",
                                 "upstream_log": upstream_log(settings)},
            }],
        },
    }


def route_configuration(settings: Settings, fast: Sequence[FastRoute] = ()) -> dict[str, Any]:
    """The listener's routes; the fast path's (when published) before the processor's."""
    shown = attempts_response_headers(settings)
    # Who served a fast request goes to the answers log, not to the client (the processor hides it on the full path).
    fast_shown = [h for h in shown if h["header"]["key"] != ATTEMPT_HEADER]
    return {"name": "llm", "virtual_hosts": [{
        "name": "llm",
        "domains": ["*"],
        "include_request_attempt_count": True,  # x-envoy-attempt-count: which candidate an attempt is
        "routes": [*health_routes(), *models_routes(), gemini_models_route(),
                   auth_route(_transcoder_config(strict=True)), *console_routes(settings), undecodable(),
                   *(e for r in fast for e in envoy_routes(r, settings, fast_shown)), attempts_route(settings),
                   unrouted()],
    }]}


def request_decompressors() -> list[dict[str, Any]]:
    """Compressed request bodies are inflated before the processor reads them (and before the body limit is
    counted, so a small bomb still gets 413); answers are left as the provider sent them. A coding without
    a decompressor here is refused with 415 (`routes.undecodable`)."""
    return [{
        "name": f"envoy.filters.http.decompressor.{coding}",
        "typed_config": {
            "@type": T + "extensions.filters.http.decompressor.v3.Decompressor",
            "decompressor_library": {"name": coding, "typed_config": library},
            "request_direction_config": {"common_config": {"enabled": {
                "default_value": True, "runtime_key": f"extproc.decompress_request_{coding}"}},
                "advertise_accept_encoding": False},
            "response_direction_config": {"common_config": {"enabled": {
                "default_value": False, "runtime_key": f"extproc.decompress_response_{coding}"}}},
        },
    } for coding, library in REQUEST_CODINGS.items()]


def _ext_proc_filter(settings: Settings) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": T + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": grpc_service(settings),
            "failure_mode_allow": False,
            "status_on_error": {"code": PROCESSOR_DOWN_STATUS},  # processor unreachable: a status only it uses
            "allow_mode_override": True,  # a Code Assist answer is unwrapped: its body is asked for per request
            "message_timeout": f"{MESSAGE_TIMEOUT:g}s",  # past it: 503 gateway_overloaded (local_replies)
            "request_attributes": [RECEIVED_AT],  # how long the headers waited: processor.max_wait
            # The plan for later attempts, and the endpoint list for the override_host load balancer.
            "metadata_options": {"receiving_namespaces": {"untyped": [PLAN_NAMESPACE, LB_NAMESPACE]}},
            "mutation_rules": {"allow_envoy": True},  # x-envoy-max-retries: no attempt past the plan
            # No answer by default: what attempts got is learned from the upstream access log.
            "processing_mode": dict(ROUTER_MODE),
        },
    }


def _transcoder_config(strict: bool = False) -> dict[str, Any]:
    """REST for the gateway's own gRPC services; requests that match none of their paths pass through.

    `strict` on the gateway's own routes: a path or method no service has is a 404/405, not a gRPC reset.
    """
    config: dict[str, Any] = {
        "@type": T + "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
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
