"""The fast path in Envoy's terms: the body's model read into metadata, and one route per published model
that adds what the router-level answer would have (see `fast/routes.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from extproc.bootstrap.failover import (
    ATTEMPTS_CLUSTER,
    grpc_service,
    header_matches,
    kept_values,
    no_answer_retries,
    skipped_when,
)
from extproc.bootstrap.names import LUA_FILTER, T, lua
from extproc.core.clients import ClientKey
from extproc.core.headers import (
    ACCOUNT_HEADER,
    API_HEADER,
    ATTEMPT_HEADER,
    CLIENT_HEADER,
    CLIENT_VALUE_PREFIX,
    ENDPOINTS_HEADER,
    ENVOY_REQUEST_HEADERS,
    INTERNAL_HEADERS,
    LOGIN_HEADER,
    PROVIDER_HEADER,
    RELAY_HEADERS,
    ROUTE_HEADER,
    STREAM_HEADER,
    UPSTREAM_API_HEADER,
)
from extproc.core.settings import Settings
from extproc.fast.routes import (
    ANSWERS_LOG,
    HEAD_KEY,
    MAX_BODY,
    MODEL_KEY,
    NAMESPACE,
    PATHS,
    QUERIES,
    STREAM_KEEP,
    STREAM_KEY,
    STREAM_NAMESPACE,
    TAIL_KEY,
    TRANSLATED_KEY,
    USAGE_ASKED_KEY,
    USAGE_NAMESPACE,
    FastRoute,
    literal,
    rendered,
    usage_asked,
)
from extproc.translate.ir import TRANSLATED
from extproc.usage.tokens import ANSWER_USAGE_KEYS

ROUTES_FILE = "routes.json"  # in settings.fast_routes: the route configuration Envoy watches
# The Lua filter's named scripts a login's route runs to join its headers (a stream's keeps its ends too).
# The Lua filter's named scripts the fast routes run (one compiled script each, shared by every route naming it).
STREAM_SCRIPT, MERGE_SCRIPT, STREAM_MERGE_SCRIPT = "stream_ends", "merge_headers", "stream_ends merge_headers"
# A JSON body, whatever parameters its type carries (`application/json; charset=utf-8`): Envoy's default is
# the bare type only, and an answer it does not read would be recorded with no usage.
JSON_TYPE = "(?i)application/json\\s*(;.*)?"
_JSON = {"allow_content_types": ["application/json"], "allow_content_types_regex": {"regex": JSON_TYPE}}


def body_to_metadata(settings: Settings) -> dict[str, Any]:
    """The model a JSON body names, and whether it streams, as dynamic metadata the fast routes match on; read
    only from a body a fast route could take (a POST to its paths, small), so no other body is parsed twice.
    With accounting, the usage its answer reports too, for the answers log (`answers_log`)."""
    config: dict[str, Any] = {
        "@type": T + "extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
        "request_rules": {"rules": [
            {"selectors": [{"key": "model"}], "on_present": {"metadata_namespace": NAMESPACE, "key": MODEL_KEY}},
            {"selectors": [{"key": "stream"}], "on_present": {"metadata_namespace": NAMESPACE, "key": STREAM_KEY}},
            {"selectors": [{"key": "stream_options"}, {"key": "include_usage"}],
             "on_present": {"metadata_namespace": NAMESPACE, "key": USAGE_ASKED_KEY}},
        ], **_JSON},
    }
    if settings.accounting:  # a streamed answer is not JSON: not buffered, not read
        config["response_rules"] = {"rules": [
            {"selectors": [{"key": k} for k in keys],
             "on_present": {"metadata_namespace": USAGE_NAMESPACE, "key": ".".join(keys)}}
            for keys in ANSWER_USAGE_KEYS], **_JSON}
    reader = {"name": "envoy.filters.http.json_to_metadata", "typed_config": config}
    return skipped_when({"not_matcher": _could_go_fast(*PATHS)}, reader)


def translated_mark() -> dict[str, Any]:
    """After `body_to_metadata`: whether a Messages body holds translated thinking (a byte search), so that the
    fast routes leave such a body to the full path."""
    names = f'local NAMESPACE, KEY, MARK = "{NAMESPACE}", "{TRANSLATED_KEY}", "{TRANSLATED}"\n'
    search = {"name": "envoy.filters.http.lua.translated_mark", "typed_config": {
        "@type": T + "extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": names + lua("translated_mark")}}}
    return {**skipped_when({"not_matcher": _could_go_fast("messages")}, search),
            "name": "envoy.filters.http.match_delegate.translated_mark"}


def _could_go_fast(*endpoints: str) -> dict[str, Any]:
    """A small POST to one of these endpoints' fast paths: the only requests a fast route could take."""
    digits = len(str(MAX_BODY))
    paths = [header_matches(":path", {"safe_regex": {"google_re2": {}, "regex": fast_path_regex(e)}})
             for e in endpoints]
    return {"and_matcher": {"predicate": [
        header_matches(":method", {"exact": "POST"}),
        paths[0] if len(paths) == 1 else {"or_matcher": {"predicate": paths}},  # Envoy wants two or more in an or
        header_matches("content-length", {"safe_regex": {"google_re2": {}, "regex": f"[0-9]{{1,{digits}}}"}}),
    ]}}


def fast_path_regex(endpoint: str) -> str:
    """The `:path` a fast route of this endpoint takes: its path, and the one query it may carry."""
    query = QUERIES.get(endpoint)
    before, model, after = PATHS[endpoint].partition("{model}")
    return _re2(before) + ("[^/:?]+" if model else "") + _re2(after) + (f"(\\?{_re2(query)})?" if query else "")


def _re2(literal: str) -> str:
    """A literal as RE2 reads it: every character but a letter, digit or slash by its code point."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "/") else f"\\x{{{ord(c):x}}}" for c in literal)


def lua_sources() -> dict[str, Any]:
    """The Lua filter's named scripts: one compiled script shared by every route that runs it (an inline
    per-route script would be one Lua state per route and worker)."""
    return {STREAM_SCRIPT: {"inline_string": _stream_names() + lua("stream_ends")},
            MERGE_SCRIPT: {"inline_string": lua("merge_headers")},
            STREAM_MERGE_SCRIPT: {"inline_string": _stream_names() + lua("stream_ends", "merge_headers")}}


def answers_log(settings: Settings) -> list[dict[str, Any]]:
    """With accounting, each answer Envoy served by itself, streamed to the processor in batches for its usage
    record (the answers the processor saw are its own to record). Such a request is the one that carries a
    fast route's endpoint list as a header (the full path's is in metadata), whichever attempt served it."""
    if not settings.accounting:
        return []
    return [{
        "name": "envoy.access_loggers.http_grpc",
        "filter": {"header_filter": {"header": {"name": ENDPOINTS_HEADER, "present_match": True}}},
        "typed_config": {
            "@type": T + "extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {"log_name": ANSWERS_LOG, "transport_api_version": "V3",
                              "grpc_service": grpc_service(settings),
                              "buffer_flush_interval": "0.1s", "buffer_size_bytes": 65536},
            "additional_request_headers_to_log": [ATTEMPT_HEADER, PROVIDER_HEADER, ROUTE_HEADER, API_HEADER,
                                                  CLIENT_HEADER,
                                                  *(["traceparent"] if settings.tracing else [])],  # its gen_ai span
        },
    }]


def scrub_forged(settings: Settings) -> dict[str, Any]:
    """First in the chain: what a client sends in our headers, or in Envoy's retry and timeout ones, is gone
    before any route sees it (a fast route sets its own; the processor sets its own on the full path)."""
    forged = (*ENVOY_REQUEST_HEADERS, *INTERNAL_HEADERS, API_HEADER, LOGIN_HEADER, STREAM_HEADER, ACCOUNT_HEADER,
              UPSTREAM_API_HEADER, *RELAY_HEADERS, *kept_values(settings))
    return {"name": "envoy.filters.http.header_mutation.forged", "typed_config": {
        "@type": T + "extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"request_mutations": [{"remove": h} for h in forged]}}}



def route_source(directory: str) -> dict[str, Any]:
    """The listener's routes, from the file the processor rewrites (moved into place: Envoy reloads it)."""
    return {"route_config_name": "llm", "config_source": {
        "path_config_source": {"path": str(Path(directory) / ROUTES_FILE), "watched_directory": {"path": directory}},
        "resource_api_version": "V3"}}


def routes_document(route_config: dict[str, Any]) -> bytes:
    return orjson.dumps({"resources": [{"@type": T + "config.route.v3.RouteConfiguration", **route_config}]})


# The last event of a chat stream and of a Messages stream: once a chunk holds one, the ends are kept at once.
STREAM_ENDS = ("data: [DONE]", "event: message_stop")


def _stream_names() -> str:
    """What stream_ends.lua expects set before it."""
    ends = ", ".join(f'"{end}"' for end in STREAM_ENDS)
    return (f'local NAMESPACE, HEAD, TAIL, KEEP = "{STREAM_NAMESPACE}", "{HEAD_KEY}", "{TAIL_KEY}", {STREAM_KEEP}\n'
            f'local ENDS = {{{ends}}}\n')


def _streamed(route: FastRoute, settings: Settings) -> list[dict[str, Any]]:
    """What the body must say of streaming for the route to match: a stream's route, a stream (a chat stream,
    with accounting, that asked for its usage); any other, no stream."""
    def flag(key: str, invert: bool = False) -> dict[str, Any]:
        return {"filter": NAMESPACE, "path": [{"key": key}], "value": {"bool_match": True}, "invert": invert}
    if not route.streams:
        return [flag(STREAM_KEY, invert=True)]
    return [flag(STREAM_KEY), *([flag(USAGE_ASKED_KEY)] if usage_asked(route.endpoint, settings) else [])]


def envoy_routes(route: FastRoute, settings: Settings, response_headers: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """A published model's routes: matched on the metadata the body gave, for a body the plan was made for; with
    client keys, one per key the route takes and way a client sends it."""
    base = _envoy_route(route, settings, response_headers)
    if route.clients is None:
        return [base]
    return [_keyed(base, key, how) for key in route.clients for how in KEY_SOURCES]


def _envoy_route(route: FastRoute, settings: Settings, response_headers: list[dict[str, Any]]) -> dict[str, Any]:
    """One route of a published model. A stream's goes to its provider directly (no relay: a cut reaches the
    client as a reset, see fast-path.md) and, with accounting, keeps the answer's ends for its usage record
    (`stream_ends`)."""
    policy = settings.failover
    action: dict[str, Any] = {
        "cluster": ATTEMPTS_CLUSTER, "timeout": "0s",
        "retry_policy": {**no_answer_retries("retriable-status-codes"),
                         "retriable_status_codes": list(policy.statuses), "num_retries": route.attempts - 1,
                         "per_try_timeout": f"{policy.first_byte_timeout:g}s",
                         "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"}},
    }
    if route.upstream_path != route.path:
        action["prefix_rewrite"] = route.upstream_path
    overwrite, absent = "OVERWRITE_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT"
    accounted = route.streams and settings.accounting
    per_filter: dict[str, Any] = {"envoy.filters.http.ext_proc": {
        "@type": T + "extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "disabled": True}}
    # A stream's answer keeps its ends for the usage record; a login's headers are joined to the client's.
    script = {(True, True): STREAM_MERGE_SCRIPT, (True, False): STREAM_SCRIPT,
              (False, True): MERGE_SCRIPT}.get((accounted, bool(route.merge)))
    if script is not None:
        per_filter[LUA_FILTER] = {"@type": T + "extensions.filters.http.lua.v3.LuaPerRoute", "name": script}
    # A stream's usage is read from its bytes: they come uncompressed (as the relay asks for them).
    plain = {"accept-encoding": "identity"} if accounted else {}
    entry: dict[str, Any] = {
        "name": f"fast {route.endpoint} {route.model}" + (" stream" if route.streams else ""),
        "match": {
            "path": route.path,
            # The path with no query but the one the endpoint takes (no ?key=).
            "headers": [{"name": ":path", "string_match": {"safe_regex": {"regex": fast_path_regex(route.endpoint)}}},
                        {"name": ":method", "string_match": {"exact": "POST"}},
                        {"name": "content-length", "range_match": {"start": 0, "end": MAX_BODY + 1}},
                        {"name": "content-encoding", "present_match": True, "invert_match": True},
                        # Set by the processor on the full path: its route, matched again, is never this one.
                        {"name": PROVIDER_HEADER, "present_match": True, "invert_match": True},
                        # A body the full path would read as JSON only by its content: the provider must be told
                        # (chat and messages need the model Envoy reads from a JSON body; Gemini's is in its path).
                        *([{"name": "content-type", "string_match": {"safe_regex": {"regex": JSON_TYPE}}}]
                          if route.endpoint == "gemini" else [])],
            "dynamic_metadata": [
                *([] if route.endpoint == "gemini" else [  # a Gemini request's model is in its path
                    {"filter": NAMESPACE, "path": [{"key": MODEL_KEY}],
                     "value": {"string_match": {"exact": route.model}}}]),
                *_streamed(route, settings),
                *([{"filter": NAMESPACE, "path": [{"key": TRANSLATED_KEY}], "value": {"bool_match": True},
                    "invert": True}] if route.endpoint == "messages" else [])],
        },
        "route": action,
        "request_headers_to_remove": list(route.remove),
        "request_headers_to_add": [{"header": {"key": k, "value": v}, "append_action": overwrite}
                                   for k, v in {**rendered(route), **plain}.items()]
        + [{"header": {"key": k, "value": v}, "append_action": absent} for k, v in route.defaults.items()],
        "response_headers_to_add": response_headers,
        "typed_per_filter_config": per_filter,
    }
    if route.merge:  # the values merge_headers.lua joins, where it reads them
        entry["metadata"] = {"filter_metadata": {LUA_FILTER: {"merge": dict(route.merge),
                                                               "keep_as": CLIENT_VALUE_PREFIX}}}
    return entry


# How a client sends its key on the fast path's endpoints (`clients.presented_key`): OpenAI's SDKs (and Anthropic's
# with a token) as a bearer, Anthropic's as x-api-key. A key sent any other way takes the full path.
KEY_SOURCES = ("authorization", "x-api-key")


def routes_per_model(route: FastRoute) -> int:
    """How many Envoy routes `envoy_routes` makes of it (each one more for Envoy to match requests against)."""
    return 1 if route.clients is None else len(route.clients) * len(KEY_SOURCES)


def _keyed(base: dict[str, Any], key: ClientKey, source: str) -> dict[str, Any]:
    """The route for the requests that send `key` in `source`: the match is the check (any other key, a spent
    one, one configured as its SHA-256, one counted per minute, falls through to the processor's route, which
    checks it as always), and the route names the client for the answers log. Envoy's api_key_auth cannot do
    it: it runs on the request's headers, before the body says which model, so which route, it is."""
    sent: list[dict[str, Any]]
    if source == "authorization":
        sent = [{"name": "authorization", "string_match": {"exact": f"Bearer {key.key}"}}]
    else:  # as the processor reads it: a bearer, when there is one, is the key
        sent = [{"name": source, "string_match": {"exact": key.key}},
                {"name": "authorization", "present_match": True, "invert_match": True}]
    named = {"header": {"key": CLIENT_HEADER, "value": literal(key.name)},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    return {**base, "name": f"{base['name']} {key.name} {source}",
            "match": {**base["match"], "headers": [*sent, *base["match"]["headers"]]},  # the key first: most fail it
            "request_headers_to_add": [*base["request_headers_to_add"], named]}
