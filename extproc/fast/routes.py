"""The fast path: requests Envoy routes by itself, with no message to the processor.

A request that asks for a model by its own id, in its provider's own API, with a body the provider takes as
it is and an API key as its credential, needs nothing from Python: Envoy reads the model from the body
(`json_to_metadata`), matches a route published for that model, and that route adds what the router-level
answer would have added — the provider, the credential, the attempt header learning reads, the plan and the
endpoint list for the attempts after the first. Those attempts (failover) go to the per-attempt processor as
any other. The processor publishes the routes for the models clients ask for (the first request of a model
takes the full path) and republishes them as health changes.

What the fast path needs from the full path is the full path's own answer: a route is `route_request`'s
result for that model, turned into Envoy's terms. Pure: snapshot in, routes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import orjson

from extproc.core.errors import ClientError
from extproc.core.headers import (
    ATTEMPT_HEADER,
    ENDPOINTS_HEADER,
    ENVOY_REQUEST_HEADERS,
    PLAN_HEADER,
    ROUTE_HEADER,
)
from extproc.core.health import Health
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.core.resolve import Decision, candidates, takes
from extproc.core.settings import Settings
from extproc.core.view import RequestView
from extproc.formats import ParsedRequest, match_endpoint
from extproc.request.mutation import route_request
from extproc.request.plan import ENDPOINTS_KEY, LB_NAMESPACE, PLAN_KEY, PLAN_NAMESPACE
from extproc.request.transforms import selected, translates

# Responses requests stay on the full path: a stored conversation belongs to one account (`previous_response_id`).
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}
MAX_BODY = 64 * 1024  # bytes: larger bodies take the full path (the plan assumes a request up to this size)
NAMESPACE = "extproc.fast"  # the dynamic metadata json_to_metadata writes the body's model (and stream) into
USAGE_NAMESPACE = "extproc.fast.usage"  # and, with accounting, the usage the answer reports (by dotted key)
ANSWERS_LOG = "answers"  # the access log of the answers Envoy served by itself (with accounting)
FAST_SUFFIX = "; fast"  # x-extproc-route of a request Envoy served by itself
# A fast route's failover candidates can serve any request it matches: the plan assumes every capability.
_EVERY_NEED = frozenset({"tools", "vision", "reasoning", "structured_output"})
AT = "\x00at\x00"  # in a route's headers, where `FastRoute.at` is written when the file is


@dataclass(frozen=True, slots=True)
class FastRoute:
    endpoint: str  # chat | messages
    path: str  # the client's path
    model: str  # the model id the body names
    upstream_path: str  # the path it leaves with
    headers: Mapping[str, str]  # set on the request (Envoy header formatter syntax: % doubled); AT stands for `at`
    defaults: Mapping[str, str]  # added only when the client sent none (the provider's default headers)
    remove: tuple[str, ...]  # what the client may have sent and the provider must not get
    attempts: int  # the plan's length: retries past it are not made
    at: float  # when the route was planned: answers are judged against the cooldowns set since (as `Decision.at`)

    def same_plan(self, other: FastRoute | None) -> bool:
        """The same route but for when it was planned (kept, so a request in flight stays judged as planned)."""
        return other is not None and replace(self, at=0.0) == replace(other, at=0.0)


def enabled(settings: Settings) -> bool:
    """The fast path serves when nothing per request needs Python: no client keys to check, no bodies to log
    (usage, with accounting, Envoy reads and logs itself); and it needs the routes file Envoy watches, which
    `extproc up` makes."""
    return settings.fast_path and not settings.clients.active and not (settings.accounting and settings.log_bodies)


def fast_candidate(endpoint: str, streams: bool, decision: Decision) -> bool:
    """Whether a request the full path just routed could have gone fast: worth publishing a route for (a
    listed model only: a name passed through to its provider is not one to keep a route for)."""
    return endpoint in PATHS and not streams and decision.reason == "direct" and decision.listed


def fast_route(endpoint_name: str, model: str, registry: Registry, health: Health, now: float,
               settings: Settings) -> FastRoute | None:
    """The route for `model` on this endpoint, or None when its requests need the full path now: whatever the
    full path would do differently for a request the route matches keeps that model off the fast path."""
    endpoint = match_endpoint(PATHS[endpoint_name])
    if endpoint is None or (endpoint_name == "messages" and _translated_into(registry, endpoint.api, endpoint_name)):
        return None
    limit = settings.failover.attempts
    try:
        decisions = candidates(RequestView(endpoint.api, model, needs=_EVERY_NEED, input_tokens=MAX_BODY // 4,
                                     endpoint=endpoint_name), registry, health, now, 0, limit)
        plain = candidates(RequestView(endpoint.api, model, endpoint=endpoint_name), registry, health, now, 0, limit)
    except ClientError:
        return None
    first = decisions[0]
    secret = first.credential.secret  # an API key's, from config: a login's token is the full path's to fetch
    if first.reason != "direct" or first.model.id != model or translates(first) is not None \
            or selected(first, False) or first.credential.account is not None or not secret:
        return None
    if first.provider.rotation == "round-robin" and len(registry.credentials_for(first.model)) > 1:
        return None  # a route sends one key: spreading requests over several is the full path's
    if any(translates(d) is not None for d in plain) or _ids(plain) != _ids(decisions):
        return None  # its failover would differ from the full path's for some request the route matches
    for own in {c.only_client for cs in registry.credentials.values() for c in cs if c.only_client is not None}:
        theirs = candidates(RequestView(endpoint.api, model, endpoint=endpoint_name, system_head=own.system_starts),
                      registry, health, now, 0, limit)
        if _ids(theirs) != _ids(decisions):
            return None  # that client's requests may also go on a login that serves it alone: the full path's
    view = RequestView(endpoint.api, model, endpoint=endpoint_name)
    forward = route_request(endpoint, ParsedRequest(view, {"model": model}), decisions, secret, {},
                            health.remembers(first.credential.id, first.model.id), settings.failover, False)
    if not forward.handled or forward.plan is None or forward.body is not None:
        return None
    defaults = {k: v for k, v in first.provider.headers.items() if k not in first.credential.headers}
    skipped = {":path", "content-length", "content-type", *ENVOY_REQUEST_HEADERS, *defaults}
    headers = {k: _literal(v) for k, v in forward.set_headers.items() if k not in skipped}
    headers[ATTEMPT_HEADER] = _literal(forward.set_headers[ATTEMPT_HEADER]).replace(_literal(repr(first.at)), AT)
    headers[ROUTE_HEADER] = _literal(first.route + FAST_SUFFIX)
    metadata = forward.plan.to_metadata()
    text = _literal(metadata[PLAN_NAMESPACE][PLAN_KEY])
    headers[PLAN_HEADER] = text.replace(_literal(f'"at":{orjson.dumps(first.at).decode()}'), f'"at":{AT}', 1)
    headers[ENDPOINTS_HEADER] = _literal(metadata[LB_NAMESPACE][ENDPOINTS_KEY])
    remove = tuple(h for h in forward.remove_headers if h not in headers and h not in defaults)
    return FastRoute(endpoint_name, endpoint.path, model, forward.set_headers.get(":path", endpoint.path), headers,
                     {k: _literal(v) for k, v in defaults.items()}, remove, len(decisions), now)


def rendered(route: FastRoute) -> dict[str, str]:
    """The route's headers with when it was planned written in."""
    at = repr(route.at)
    return {k: v.replace(AT, at) for k, v in route.headers.items()}


def _ids(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.model.qualified, d.credential.id) for d in decisions]


def _translated_into(registry: Registry, api: Api, endpoint: str) -> bool:
    """Whether some model could be served translated to this API's clients: their history may then hold
    thinking another provider wrote, which the full path leaves out on the way back (`translate.held`)."""
    def compute() -> bool:
        view = RequestView(api, "", endpoint=endpoint)
        return any(takes(p, m, view) and not p.speaks(api, endpoint, m.endpoints)
                   for m in registry.models if (p := registry.providers.get(m.provider)) is not None)

    return registry.memo(("translated into", api, endpoint), compute)


def _literal(value: str) -> str:
    """A value Envoy's header formatter leaves as it is."""
    return value.replace("%", "%%")
