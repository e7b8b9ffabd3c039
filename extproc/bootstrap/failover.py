"""Same-request failover in Envoy's terms: the attempts cluster, one internal listener per provider, the
per-attempt ext_proc, and the upstream access log that teaches the processor what each attempt got.

Every request goes to the `attempts` cluster. Its `override_host` load balancer walks the endpoint list the
router-level answer put in dynamic metadata, one entry per attempt; each endpoint is an internal listener
that sends to its provider's cluster with that provider's TLS, SNI and Host. The router's retry policy
decides when an attempt failed. The per-attempt ext_proc runs for every attempt the router-level answer
did not make itself (skipped, at no message, on a first attempt it made).
"""

from __future__ import annotations

from typing import Any

from extproc.bootstrap.names import GRPC_LIMIT_SLACK, PROCESSOR_CLUSTER, UPSTREAM_MODE, T, provider_cluster_name
from extproc.bootstrap.tracing import connection_tracing
from extproc.core.errors import ClientError
from extproc.core.flows import merged_header_names
from extproc.core.headers import (
    ACCOUNT_HEADER,
    API_HEADER,
    ATTEMPT_COUNT_HEADER,
    ATTEMPT_HEADER,
    ATTEMPT_ROLE,
    ENDPOINTS_HEADER,
    FAILURE_HEADER,
    HANDLED_HEADER,
    INTERNAL_HEADERS,
    LEARN_HEADER,
    LOGIN_HEADER,
    PROCESSOR_TOKEN_HEADER,
    PROVIDER_HEADER,
    REAUTH_ROLE,
    RELAY_HEADERS,
    ROLE_HEADER,
    ROUTE_HEADER,
    STREAM_HEADER,
    UPSTREAM_API_HEADER,
    client_value_header,
)
from extproc.core.providers import Api, ProviderSpec
from extproc.core.settings import MAX_FAILOVER_ATTEMPTS, Settings
from extproc.formats import FAMILIES
from extproc.request.plan import (
    ENDPOINTS_KEY,
    HOST_METADATA,
    LB_NAMESPACE,
    LOGIN_KEY,
    PLAN_NAMESPACE,
    PROVIDER_KEY,
    listener_name,
)

ATTEMPTS_CLUSTER = "attempts"
RELAY_CLUSTER = "relay"  # the processor's stream relay
UPSTREAM_CODEC = {"name": "envoy.filters.http.upstream_codec",  # last in a cluster's upstream filters
                  "typed_config": {"@type": T + "extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}


def grpc_service(settings: Settings, role: str | None = None) -> dict[str, Any]:
    """How Envoy reaches the processor: with the shared token, and the role of the filter that calls."""
    metadata = [{"key": PROCESSOR_TOKEN_HEADER, "value": settings.processor_token}] if settings.processor_token else []
    if role:
        metadata.append({"key": ROLE_HEADER, "value": role})
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": PROCESSOR_CLUSTER,
                                              "max_receive_message_length": settings.max_request_bytes
                                              + GRPC_LIMIT_SLACK}}
    if metadata:
        service["initial_metadata"] = metadata
    return service


def no_answer_retries(*also: str) -> dict[str, Any]:
    """An attempt no provider answered fails over, whatever `failover.statuses` holds: the attempts' own
    connection failed or reset, or the provider's did (its listener's reply carries the failure header)."""
    return {"retry_on": ",".join(("connect-failure", "reset", "retriable-headers", *also)),
            "retriable_headers": [{"name": FAILURE_HEADER, "present_match": True}]}


def circuit_breakers(settings: Settings) -> dict[str, Any]:
    """As many requests, and retries, in flight as clients may hold connections: Envoy's defaults (1024
    requests, 3 retries at once) would refuse failover under load."""
    limit = settings.max_connections * MAX_FAILOVER_ATTEMPTS  # failover.attempts may grow on a reload
    return {"thresholds": [{"priority": "DEFAULT", "max_connections": limit, "max_pending_requests": limit,
                            "max_requests": limit, "max_retries": limit}]}


def retry_policy(settings: Settings) -> dict[str, Any]:
    """Retries on connection failures and resets, the provider's too (its listener's reply names the failure,
    whatever `failover.statuses` holds); the router-level answer adds the rest per request (which statuses
    retry, how many attempts, how long one may wait for its first byte: `forward.failover_headers`), so a
    reloaded `failover` section applies with no change to Envoy."""
    policy = settings.failover
    return {
        **no_answer_retries(),
        "num_retries": policy.attempts - 1,
        "per_try_timeout": f"{policy.first_byte_timeout:g}s",
        "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.05s"},
    }


def attempts_cluster(settings: Settings) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": {"envoy_internal_address": {
        "server_listener_name": listener_name(p.name), "endpoint_id": "0"}}},
        "metadata": {"filter_metadata": {PLAN_NAMESPACE: {PROVIDER_KEY: p.name}}}}
        for p in settings.providers.values()]
    return {
        "name": ATTEMPTS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": settings.max_request_bytes,
        "circuit_breakers": circuit_breakers(settings),
        "load_balancing_policy": {"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.override_host",
            "typed_config": {
                "@type": T + "extensions.load_balancing_policies.override_host.v3.OverrideHost",
                # The router-level answer's list, or a fast route's (a header only its route sets).
                "override_host_sources": [{"metadata": {"key": LB_NAMESPACE, "path": [{"key": ENDPOINTS_KEY}]}},
                                          {"header": ENDPOINTS_HEADER}],
                # Past the list Envoy would pick any endpoint: the router-level answer caps the retries at the
                # list's length, and the per-attempt processor refuses an endpoint its candidate does not name.
                "fallback_policy": {"policies": [{"typed_extension_config": {
                    "name": "envoy.load_balancing_policies.round_robin",
                    "typed_config": {"@type": T + "extensions.load_balancing_policies.round_robin.v3.RoundRobin"},
                }}]},
            },
        }}]},
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "http_filters": [_attempt_filter(settings), UPSTREAM_CODEC],
        }},
        "load_assignment": {"cluster_name": ATTEMPTS_CLUSTER, "endpoints": [{"lb_endpoints": endpoints}]},
    }


def header_matches(name: str, match: dict[str, Any]) -> dict[str, Any]:
    """A matcher predicate on one request header (`match`: a string matcher, e.g. {"exact": "1"})."""
    return {"single_predicate": {
        "input": {"name": name, "typed_config": {
            "@type": T + "type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": name}},
        "value_match": match}}


def skipped_when(predicate: dict[str, Any], filter_config: dict[str, Any]) -> dict[str, Any]:
    """A filter Envoy skips, at no cost, on the requests the predicate matches."""
    return {
        "name": "envoy.filters.http.match_delegate",
        "typed_config": {
            "@type": T + "extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": filter_config,
            "xds_matcher": {"matcher_list": {"matchers": [{
                "predicate": predicate,
                "on_match": {"action": {"name": "skip", "typed_config": {
                    "@type": T + "extensions.filters.common.matcher.action.v3.SkipFilter"}}},
            }]}},
        },
    }


def _upstream_ext_proc(settings: Settings, role: str, timeout: str, **extra: Any) -> dict[str, Any]:
    """An ext_proc in a cluster's upstream filters: request headers only, unless its answer asks for more
    (mode override: the body of an attempt it builds, the answer it reshapes or confirms), failing closed, with
    the plan's dynamic metadata forwarded."""
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": T + "extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": grpc_service(settings, role),
            "failure_mode_allow": False,
            "allow_mode_override": True,
            "message_timeout": timeout,
            "metadata_options": {"forwarding_namespaces": {"untyped": [PLAN_NAMESPACE]}},
            "processing_mode": dict(UPSTREAM_MODE),
            **extra,
        },
    }


def _attempt_filter(settings: Settings) -> dict[str, Any]:
    """The per-attempt ext_proc, skipped on a first attempt the router-level answer made (no message)."""
    ext_proc = _upstream_ext_proc(settings, ATTEMPT_ROLE, timeout="5s",
                                  request_attributes=[HOST_METADATA],
                                  mutation_rules={"allow_all_routing": True})  # each attempt sets its own :path
    skip_first = {"and_matcher": {"predicate": [header_matches(ATTEMPT_COUNT_HEADER, {"exact": "1"}),
                                                header_matches(HANDLED_HEADER, {"exact": "1"})]}}
    return skipped_when(skip_first, ext_proc)


def login_retry_policy() -> dict[str, Any]:
    """A login's 401, once, on the same login: its retry goes with a refreshed token (the reauth filter)."""
    return {
        "retry_on": "retriable-status-codes",
        "retriable_status_codes": [401],
        "num_retries": 1,
        "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.02s"},
    }


def login_to_metadata() -> dict[str, Any]:
    """The login an attempt carries, kept where the reauth filter reads it (the header itself never goes on:
    the route drops it, and a retry sees the header map its first try left)."""
    return {
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": T + "extensions.filters.http.header_to_metadata.v3.Config",
            "request_rules": [{"header": LOGIN_HEADER, "on_header_present": {
                "metadata_namespace": PLAN_NAMESPACE, "key": LOGIN_KEY, "type": "STRING"}}],
        },
    }


def provider_filters(settings: Settings) -> list[dict[str, Any]]:
    """The provider cluster's upstream filters: the reauth ext_proc on a login's retry only (skipped, at no
    message, on every first try), then nothing of ours goes on to the provider."""
    reauth = _upstream_ext_proc(settings, REAUTH_ROLE, timeout="15s")  # a refresh calls the OAuth server
    # The route drops the count the attempts router set, and this router sets its own on a retry only.
    first_try = {"not_matcher": header_matches(ATTEMPT_COUNT_HEADER, {"exact": "2"})}
    scrub = {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": T + "extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": ATTEMPT_COUNT_HEADER}]},
        },
    }
    return [skipped_when(first_try, reauth), scrub, UPSTREAM_CODEC]


def provider_listener(provider: ProviderSpec, settings: Settings, local_replies: dict[str, Any]) -> dict[str, Any]:
    """The internal listener an attempt to this provider goes through: its cluster, its Host, no internal headers."""
    timeout = f"{settings.upstream_timeout:g}s"
    return {
        "name": listener_name(provider.name),
        "internal_listener": {},
        "per_connection_buffer_limit_bytes": settings.max_request_bytes,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": listener_name(provider.name),
                "stream_idle_timeout": timeout,
                "request_timeout": "0s",
                "local_reply_config": local_replies,
                **connection_tracing(settings, listener_name(provider.name)),
                "route_config": {"name": provider.name, "virtual_hosts": [{
                    "name": provider.name,
                    "domains": ["*"],
                    "include_request_attempt_count": True,  # the reauth filter runs on a retry only
                    # Only an attempt planned for this provider: anything else is refused, never sent on.
                    "routes": [*(_provider_route(provider, settings, login, stream)
                                 for login in (True, False) for stream in (True, False)), *_refusals()],
                }]},
                "http_filters": [login_to_metadata(), {"name": "envoy.filters.http.router",
                                  "typed_config": {"@type": T + "extensions.filters.http.router.v3.Router",
                                                   "suppress_envoy_headers": True}}],  # none reach a provider
            },
        }]}],
    }


def kept_values(settings: Settings) -> list[str]:
    """The client's values a fast login route keeps for later attempts (merge_headers.lua): never sent on."""
    return [client_value_header(name) for name in sorted(merged_header_names(settings.flows))]


def _provider_route(provider: ProviderSpec, settings: Settings, login: bool, stream: bool) -> dict[str, Any]:
    """The route of an attempt planned for this provider: a login's retries its 401 once (see reauth.py), and
    a streamed answer comes through the processor's relay (see relay.py)."""
    headers: list[dict[str, Any]] = [{"name": PROVIDER_HEADER, "string_match": {"exact": provider.name}}]
    route: dict[str, Any] = {"cluster": RELAY_CLUSTER if stream else provider_cluster_name(provider.name),
                             "host_rewrite_literal": provider.upstream.authority, "timeout": "0s"}
    if login:
        headers.append({"name": LOGIN_HEADER, "present_match": True})
        route["retry_policy"] = login_retry_policy()
    if stream:
        headers.append({"name": STREAM_HEADER, "present_match": True})
    # x-extproc-api stays: Envoy's own replies here pick the client's envelope by it. The relay also reads the
    # provider and attempt headers, and takes them off itself.
    kept = {PROVIDER_HEADER, ATTEMPT_HEADER, ROUTE_HEADER, ACCOUNT_HEADER, UPSTREAM_API_HEADER} if stream else set()
    entry: dict[str, Any] = {
        "match": {"prefix": "/", "headers": headers}, "route": route,
        "request_headers_to_remove": [*(h for h in (*INTERNAL_HEADERS, ACCOUNT_HEADER, UPSTREAM_API_HEADER)
                                        if h not in kept),
                                      LOGIN_HEADER, STREAM_HEADER, ATTEMPT_COUNT_HEADER, "x-envoy-max-retries",
                                      "x-envoy-original-path",  # a fast route's rewrite of its prefix
                                      *RELAY_HEADERS, *kept_values(settings)]}
    if not stream:  # the kind of failure is ours to say: a provider's answer cannot pass for Envoy's own reply
        entry["response_headers_to_remove"] = [FAILURE_HEADER]  # (the relay takes it off a streamed answer)
    if stream and settings.processor_token:
        entry["request_headers_to_add"] = [{"header": {"key": RELAY_HEADERS[0], "value": settings.processor_token},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return entry


def _window_headers(settings: Settings) -> list[str]:
    """The headers in which the logins' subscriptions report their usage windows (data: the flows' `use`)."""
    return list(dict.fromkeys(h for flow in settings.flows.values() if flow.use.windows
                              for h in flow.use.windows.headers))


def _refusals() -> list[dict[str, Any]]:
    """What an attempt not planned for this provider gets (its processor refused it, or it was misrouted): a
    503 in the client's envelope, which the router's retry policy sends to the next candidate."""
    refusal = ClientError(503, "attempt_refused", "This attempt could not be made; no credential went with it.")
    routes = []
    for family in sorted(FAMILIES.values(), key=lambda f: f.api is Api.OPENAI):  # OpenAI's: the catch-all
        match: dict[str, Any] = {"prefix": "/"}
        if family.api is not Api.OPENAI:
            match["headers"] = [{"name": API_HEADER, "string_match": {"exact": family.api.value}}]
        routes.append({"match": match, "direct_response": {
            "status": 503, "body": {"inline_string": family.error_body(refusal).decode()}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]})
    return routes


def upstream_log(settings: Settings) -> list[dict[str, Any]]:
    """The attempts that teach something, streamed to the processor in small batches as they end: every
    failure (a status ≥ 400, or none), and a success the processor asked to hear of. Learning costs no
    ext_proc message, a healthy request no log entry, and a failure is known within milliseconds."""
    teaching = {"or_filter": {"filters": [
        {"status_code_filter": {"comparison": {"op": "GE", "value": {"default_value": 400, "runtime_key": "_"}}}},
        {"response_flag_filter": {}},  # any flag: connect failure, reset, per-try timeout
        {"header_filter": {"header": {"name": LEARN_HEADER, "present_match": True}}},
    ]}}
    return [{
        "name": "envoy.access_loggers.http_grpc",
        "filter": teaching,
        "typed_config": {
            "@type": T + "extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                "log_name": "attempts",
                "transport_api_version": "V3",
                "grpc_service": grpc_service(settings),
                "buffer_flush_interval": "0.01s",
            },
            "additional_request_headers_to_log": [ATTEMPT_HEADER, ATTEMPT_COUNT_HEADER],
            "additional_response_headers_to_log": ["retry-after", "retry-after-ms", FAILURE_HEADER,
                                                   *_window_headers(settings)],
        },
    }]
