"""Routes: the gateway's own APIs straight to the processor's gRPC services, every planned request to the
attempts cluster, and a refusal for anything the processor let through unplanned."""

from __future__ import annotations

from typing import Any

from extproc.bootstrap.failover import ATTEMPTS_CLUSTER, RELAY_CLUSTER, retry_policy
from extproc.bootstrap.local_replies import UNDECODABLE_STATUS
from extproc.bootstrap.names import LUA_FILTER, PROCESSOR_CLUSTER, REQUEST_CODINGS, T, lua
from extproc.core.headers import ATTEMPT_HEADER, ATTEMPTS_HEADER, PROVIDER_HEADER, RELAY_HEADERS, RESPONSE_HEADERS
from extproc.core.settings import Settings


def _ext_proc_off() -> dict[str, Any]:
    return {"@type": T + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "disabled": True}


def _lua_per_route(*scripts: str) -> dict[str, Any]:
    return {"@type": T + "extensions.filters.http.lua.v3.LuaPerRoute",
            "source_code": {"inline_string": lua("grpc_headers", *scripts)}}


def models_routes() -> list[dict[str, Any]]:
    """GET /v1/models… goes straight to the Models service: no ext_proc round trip. The Anthropic SDK's (its
    Lua moves it under /extproc/anthropic, and the route is matched again there) gets Anthropic's shape."""
    return [{
        "name": name,
        "match": {"path_separated_prefix": prefix,
                  "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "10s"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": _ext_proc_off(),
            LUA_FILTER: _lua_per_route("models_response"),
        },
    } for name, prefix in (("models", "/v1/models"), ("anthropic-models", "/extproc/anthropic/v1/models"))]


def gemini_models_route() -> dict[str, Any]:
    """GET /v1beta/models… (Gemini's models list and model) to the Models service; POSTs there are requests."""
    return {
        "name": "gemini-models",
        "match": {"path_separated_prefix": "/v1beta/models",
                  "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "10s"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": _ext_proc_off(),
            LUA_FILTER: _lua_per_route("models_response"),
        },
    }


def health_routes() -> list[dict[str, Any]]:
    """GET /healthz: Envoy answers itself (alive). GET /readyz: the processor's Models service answers (it is
    reachable) with what it lacks. Neither touches a provider."""
    return [{
        "name": "healthz",
        "match": {"path": "/healthz", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"inline_string": '{"status":"alive"}'}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "typed_per_filter_config": {"envoy.filters.http.ext_proc": _ext_proc_off()},
    }, {
        "name": "readyz",
        "match": {"path": "/readyz", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "5s"},
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": _ext_proc_off(),
            LUA_FILTER: _lua_per_route("models_response"),
        },
    }]


def auth_route(strict_transcoder: dict[str, Any]) -> dict[str, Any]:
    """/auth/… goes straight to the Auth service (its admin token is checked there)."""
    return {
        "name": "auth",
        "match": {"path_separated_prefix": "/auth"},
        "route": {"cluster": PROCESSOR_CLUSTER, "timeout": "180s"},  # finishing a Gemini login onboards
        "typed_per_filter_config": {
            "envoy.filters.http.ext_proc": _ext_proc_off(),
            "envoy.filters.http.grpc_json_transcoder": strict_transcoder,
            LUA_FILTER: _lua_per_route("auth_response"),
        },
    }


def console_route(settings: Settings) -> dict[str, Any]:
    """/console/… goes to the web console on the processor's relay server, with the processor token the relay
    asks of Envoy (its sign-in and CSRF checks are the console's)."""
    route: dict[str, Any] = {
        "name": "console",
        "match": {"path_separated_prefix": "/console"},
        "route": {"cluster": RELAY_CLUSTER, "timeout": "180s"},  # finishing a Gemini login onboards
        "typed_per_filter_config": {"envoy.filters.http.ext_proc": _ext_proc_off()},
    }
    if settings.processor_token:
        route["request_headers_to_add"] = [{"header": {"key": RELAY_HEADERS[0], "value": settings.processor_token},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return route


def attempts_response_headers(settings: Settings) -> list[dict[str, Any]]:
    """What the client's response carries of how it was served (Envoy copies it from the request)."""
    headers = [{"header": {"key": h, "value": f"%REQ({h})%"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
               for h in RESPONSE_HEADERS]
    headers.append({"header": {"key": ATTEMPTS_HEADER, "value": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
    if settings.accounting:  # who served it, for its usage record: the processor reads it and takes it off
        headers.append({"header": {"key": ATTEMPT_HEADER, "value": f"%REQ({ATTEMPT_HEADER})%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
    return headers


def attempts_route(settings: Settings) -> dict[str, Any]:
    """Every request the processor planned (it always sets the provider header) goes to the attempts cluster."""
    return {
        "name": "attempts",
        "match": {"prefix": "/", "headers": [{"name": PROVIDER_HEADER, "present_match": True}]},
        # No overall timeout: each attempt has failover.first_byte_timeout to answer, and an answer
        # upstream_timeout between chunks (the stream idle timeout); a long stream is never cut.
        "route": {"cluster": ATTEMPTS_CLUSTER, "timeout": "0s", "retry_policy": retry_policy(settings)},
        "response_headers_to_add": attempts_response_headers(settings),
    }


def undecodable() -> dict[str, Any]:
    """A body in a content-encoding no request decompressor reads: 415 (in the client's envelope, by the local
    replies), before the processor could mistake it for invalid JSON. Matched on the headers as the client sent
    them, so the codings the decompressors take (and `identity`) pass on."""
    readable = "|".join(("identity", *REQUEST_CODINGS))
    return {
        "name": "undecodable",
        "match": {"prefix": "/", "headers": [
            {"name": "content-encoding", "present_match": True},
            {"name": "content-encoding", "string_match": {"safe_regex": {"regex": f"(?i)\\s*({readable})\\s*"}},
             "invert_match": True}]},
        "direct_response": {"status": UNDECODABLE_STATUS, "body": {"inline_string": "Unsupported content-encoding"}},
        "typed_per_filter_config": {"envoy.filters.http.ext_proc": _ext_proc_off()},
    }


def unrouted() -> dict[str, Any]:
    """Reached only if the processor let a request through without choosing a provider: refuse it."""
    body = '{"error":{"message":"No provider was chosen for this request.","type":"server_error","code":"unrouted"}}'
    return {
        "name": "unrouted",
        "match": {"prefix": "/"},
        "direct_response": {"status": 500, "body": {"inline_string": body}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }
