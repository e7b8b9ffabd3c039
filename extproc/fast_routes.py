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
from dataclasses import dataclass

import orjson

from extproc.attempts import ENDPOINTS_KEY, LB_NAMESPACE, PLAN_KEY, PLAN_NAMESPACE
from extproc.core.errors import ClientError
from extproc.core.headers import (
    ATTEMPT_HEADER,
    ENDPOINTS_HEADER,
    ENVOY_REQUEST_HEADERS,
    PLAN_HEADER,
    REASON_HEADER,
)
from extproc.core.health import HealthView
from extproc.core.registry import Registry
from extproc.core.resolve import Decision, RequestView, plan
from extproc.core.settings import Settings
from extproc.formats import ParsedRequest, match_endpoint
from extproc.formats.transforms import selected, translates
from extproc.forward import route_request

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
MAX_BODY = 64 * 1024  # bytes: larger bodies take the full path (the plan assumes a request up to this size)
NAMESPACE = "extproc.fast"  # the dynamic metadata json_to_metadata writes the body's model (and stream) into
# A fast route's failover candidates can serve any request it matches: the plan assumes every capability.
_EVERY_NEED = frozenset({"tools", "vision", "reasoning", "structured_output"})
START_TIME = "%START_TIME(%s.%3f)%"  # Envoy fills in when the request came: learning judges answers by it


@dataclass(frozen=True, slots=True)
class FastRoute:
    endpoint: str  # chat | responses | messages
    path: str  # the client's path
    model: str  # the model id the body names
    upstream_path: str  # the path it leaves with
    headers: Mapping[str, str]  # set on the request (Envoy header formatter syntax: % doubled)
    defaults: Mapping[str, str]  # added only when the client sent none (the provider's default headers)
    remove: tuple[str, ...]  # what the client may have sent and the provider must not get
    attempts: int  # the plan's length: retries past it are not made


def enabled(settings: Settings) -> bool:
    """The fast path serves when nothing per request needs Python: no usage to read from answers, and no
    client keys to check (and it needs the routes file Envoy watches, which `extproc up` makes)."""
    return settings.fast_path and not settings.accounting and not settings.clients.active


def fast_candidate(endpoint: str, streams: bool, decision: Decision) -> bool:
    """Whether a request the full path just routed could have gone fast: worth publishing a route for."""
    return endpoint in PATHS and not streams and decision.reason == "direct"


def fast_route(endpoint_name: str, model: str, registry: Registry, health: HealthView, now: float,
               settings: Settings) -> FastRoute | None:
    """The route for `model` on this endpoint, or None when its requests need the full path now."""
    endpoint = match_endpoint(PATHS[endpoint_name])
    if endpoint is None:
        return None
    view = RequestView(endpoint.api, model, needs=_EVERY_NEED, input_tokens=MAX_BODY // 4, endpoint=endpoint_name)
    try:
        decisions = plan(view, registry, health, now, 0, settings.failover.attempts)
    except ClientError:
        return None
    first = decisions[0]
    secret = first.credential.secret  # an API key's, from config: a login's token is the full path's to fetch
    if first.reason != "direct" or translates(first) is not None or selected(first, False) \
            or first.credential.account is not None or not secret:
        return None
    if first.provider.rotation == "round-robin" and len(registry.credentials_for(first.model)) > 1:
        return None  # a route sends one key: spreading requests over several is the full path's
    decisions = [first, *(d for d in decisions[1:] if translates(d) is None)]
    forward = route_request(endpoint, ParsedRequest(view, {"model": model}, 0), decisions, secret, {}, False,
                            settings.failover, False)
    if not forward.handled or forward.plan is None:
        return None
    defaults = {k: v for k, v in first.provider.headers.items() if k not in first.credential.headers}
    skipped = {":path", "content-length", "content-type", *ENVOY_REQUEST_HEADERS, *defaults}
    headers = {k: _literal(v) for k, v in forward.set_headers.items() if k not in skipped}
    headers[ATTEMPT_HEADER] = _literal(forward.set_headers[ATTEMPT_HEADER]).replace(_literal(repr(first.at)),
                                                                                    START_TIME)
    headers[REASON_HEADER] = _literal(f"{first.why}; fast")
    metadata = forward.plan.to_metadata()
    text = _literal(metadata[PLAN_NAMESPACE][PLAN_KEY])
    headers[PLAN_HEADER] = text.replace(_literal(f'"at":{orjson.dumps(first.at).decode()}'), f'"at":{START_TIME}', 1)
    headers[ENDPOINTS_HEADER] = _literal(metadata[LB_NAMESPACE][ENDPOINTS_KEY])
    remove = tuple(h for h in forward.remove_headers if h not in headers and h not in defaults)
    return FastRoute(endpoint_name, endpoint.path, model,
                     forward.set_headers.get(":path", endpoint.path), headers,
                     {k: _literal(v) for k, v in defaults.items()}, remove, len(decisions))


def _literal(value: str) -> str:
    """A value Envoy's header formatter leaves as it is."""
    return value.replace("%", "%%")
