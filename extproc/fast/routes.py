"""The fast path: requests Envoy routes by itself, with no message to the processor.

A request that asks for a model by its own id, in its provider's own API, with a body the provider takes as
it is and an API key or a login that serves every client as its credential, needs nothing from Python (a
login's current token is the account manager's to hand out, `Tokens`): Envoy reads the model from the body
(`json_to_metadata`), matches a route published for that model, and that route adds what the router-level
answer would have added — the provider, the credential, the attempt header learning reads, the plan and the
endpoint list for the attempts after the first. Those attempts (failover) go to the per-attempt processor as
any other. The processor publishes the routes for the models clients ask for (the first request of a model
takes the full path) and republishes them as health changes.

What the fast path needs from the full path is the full path's own answer: a route is `route_request`'s
result for that model, turned into Envoy's terms. Pure: snapshot in, routes out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from extproc.core.clients import ClientKey, ClientPolicy
from extproc.core.errors import ClientError
from extproc.core.headers import (
    ATTEMPT_HEADER,
    ENDPOINTS_HEADER,
    ENVOY_REQUEST_HEADERS,
    PLAN_HEADER,
    ROUTE_HEADER,
)
from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.resolve import Decision, candidates
from extproc.core.settings import Credential, Settings
from extproc.core.view import RequestView
from extproc.formats import ParsedRequest, match_endpoint
from extproc.request.mutation import route_request
from extproc.request.plan import ENDPOINTS_KEY, LB_NAMESPACE, PLAN_KEY, PLAN_NAMESPACE, Attempted, Plan
from extproc.request.transforms import selected, translates

# Responses requests stay on the full path: a stored conversation belongs to one account (`previous_response_id`).
# A Gemini request names its model in the path: its route matches that model's path (and rewrites it whole, to
# the provider's: Vertex AI's under its project and location); of Gemini's, generateContent only, not streamed.
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "gemini": "/v1beta/models/{model}:generateContent"}
# The one query a fast route takes, by endpoint: Claude Code's `?beta=true`, passed on as the full path passes it.
# No other (a Gemini-style `?key=` is a client key the processor reads).
QUERIES = {"messages": "beta=true"}
MAX_BODY = 128 * 1024  # bytes: larger bodies take the full path (the plan assumes a request up to this size)
NAMESPACE = "extproc.fast"  # the dynamic metadata json_to_metadata writes the body's model (and stream) into
MODEL_KEY, STREAM_KEY = "model", "stream"  # their keys in it
# Set (by Envoy's byte search, bootstrap/lua/translated_mark.lua) when a Messages body holds the mark of thinking
# another provider wrote, which the full path leaves out on the way back to Anthropic (`translate.held`).
TRANSLATED_KEY = "translated"
USAGE_ASKED_KEY = "include_usage"  # … and a chat stream's `stream_options.include_usage`
STREAM_NAMESPACE = "extproc.fast.stream"  # a fast stream's answer: its first and last bytes (by the Lua script)
HEAD_KEY, TAIL_KEY = "head", "tail"  # their keys in it
STREAM_KEEP = 4096  # bytes kept of each end of a fast stream's answer
USAGE_NAMESPACE = "extproc.fast.usage"  # and, with accounting, the usage the answer reports (by dotted key)
ANSWERS_LOG = "answers"  # the access log of the answers Envoy served by itself (with accounting)
FAST_SUFFIX = "; fast"  # x-extproc-route of a request Envoy served by itself
# A fast route's failover candidates can serve any request it matches: the plan assumes every capability.
_EVERY_NEED = frozenset({"tools", "vision", "reasoning", "structured_output"})
_PLANNED_HEADERS = (ATTEMPT_HEADER, PLAN_HEADER, ENDPOINTS_HEADER)  # what `rendered` writes from the plan


@dataclass(frozen=True, slots=True)
class FastRoute:
    endpoint: str  # chat | messages
    path: str  # the client's path
    model: str  # the model id the body names
    upstream_path: str  # the path it leaves with
    headers: Mapping[str, str]  # set on the request, but for the plan's (Envoy header formatter syntax: % doubled)
    defaults: Mapping[str, str]  # added only when the client sent none (the provider's default headers)
    remove: tuple[str, ...]  # what the client may have sent and the provider must not get
    # The plan's and the first attempt's (`rendered` writes them): their `at` is when the route was planned, and
    # answers are judged against the cooldowns set since (as `Decision.at`).
    plan: Plan
    first: Attempted
    streams: bool = False  # the route of the model's streamed requests (those of its plain ones: False)
    # With client keys: the keys Envoy lets through (the others' requests take the full path); None: no keys.
    clients: tuple[ClientKey, ...] | None = None
    # A login's headers joined to the client's values (`Credential.merge_headers`): a per-route Lua joins them.
    merge: Mapping[str, str] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        """The plan's length: retries past it are not made."""
        return len(self.plan.candidates)

    def same_plan(self, other: FastRoute | None) -> bool:
        """The same route but for when it was planned (kept, so a request in flight stays judged as planned)."""
        return other is not None and other._unplanned() == self._unplanned()

    def _unplanned(self) -> FastRoute:
        return replace(self, plan=replace(self.plan, at=0.0), first=replace(self.first, at=0.0))


def enabled(settings: Settings) -> bool:
    """The fast path serves when nothing per request needs Python: no bodies to log (usage, with accounting,
    Envoy reads and logs itself), and, with client keys, some key Envoy can check by itself; and it needs the
    routes file Envoy watches, which `extproc up` makes (or `fast_routes` names, for an Envoy rendered ahead)."""
    clients = settings.clients
    return settings.fast_path and not (settings.accounting and settings.log_bodies) \
        and (not clients.active or any(k.checked_by_envoy for k in clients.keys))


def _route_clients(clients: ClientPolicy, decisions: list[Decision], spent: frozenset[str]
                   ) -> tuple[ClientKey, ...] | None:
    """The keys whose requests the route may take: Envoy can check them, their budget is not spent, and the full
    path would plan the same attempts for them (the key may use the model asked for and every candidate)."""
    if not clients.active:
        return None
    model = decisions[0].requested
    return tuple(k for k in clients.keys if k.checked_by_envoy and k.name not in spent and k.may_use(model)
                 and all(k.may_use(d.model.id, d.model.qualified) for d in decisions))


def fast_candidate(endpoint: str, streams: bool, decision: Decision, without_usage: bool = False) -> bool:
    """Whether a request the full path just routed could have gone fast: worth publishing a route for (a
    listed model only: a name passed through to its provider is not one to keep a route for). A chat stream
    the full path asks for its usage on the client's behalf (`without_usage`, with accounting) is not: the fast
    path cannot change the body, and would have no usage to record."""
    return endpoint in PATHS and decision.reason == "direct" and decision.listed and not (streams and without_usage) \
        and not (streams and endpoint == "gemini")


def usage_asked(endpoint: str, settings: Settings) -> bool:
    """Whether a fast stream route on this endpoint matches only a stream that asked for its usage
    (`stream_options.include_usage`): with accounting, a chat stream reports its usage only then."""
    return settings.accounting and endpoint == "chat"


# A login's secret a route may carry now (the account manager's `route_token`); None: its requests take the full
# path, which fetches (and refreshes) it per request.
Tokens = Callable[[Credential], str | None]


def fast_route(endpoint_name: str, model: str, registry: Registry, health: Health, now: float,
               settings: Settings, spent: frozenset[str] = frozenset(), streams: bool = False,
               tokens: Tokens | None = None) -> FastRoute | None:
    """The route for `model` on this endpoint (its streamed requests' with `streams`), or None when its requests
    need the full path now: whatever the full path would do differently for a request the route matches keeps
    that model off the fast path. `spent`: the client keys whose budget is spent (their requests are refused on
    the full path); `tokens`: the logins' current tokens (without them, a login's requests take the full path)."""
    endpoint = match_endpoint(client_path(endpoint_name, model))
    if endpoint is None or (endpoint_name == "gemini" and (streams or settings.clients.active)):
        return None  # Gemini's streams, and its SDK's key (x-goog-api-key), are the full path's
    limit = settings.failover.attempts
    streaming = frozenset({"streaming"}) if streams else frozenset()
    try:
        decisions = candidates(RequestView(endpoint.api, model, needs=_EVERY_NEED | streaming,
                                           input_tokens=MAX_BODY // 4, endpoint=endpoint_name),
                               registry, health, now, 0, limit)
        plain = candidates(RequestView(endpoint.api, model, needs=streaming, endpoint=endpoint_name), registry,
                           health, now, 0, limit)
    except ClientError:
        return None
    first = decisions[0]
    cred = first.credential
    secret = (tokens(cred) if tokens is not None else None) if cred.refreshable else cred.secret
    if first.reason != "direct" or first.model.id != model or translates(first) is not None \
            or selected(first, streams) or not secret:
        return None
    if first.provider.rotation == "round-robin" and len(registry.credentials_for(first.model)) > 1:
        return None  # a route sends one key: spreading requests over several is the full path's
    if any(translates(d) is not None for d in plain) or _ids(plain) != _ids(decisions):
        return None  # its failover would differ from the full path's for some request the route matches
    for own in {c.only_client for cs in registry.credentials.values() for c in cs if c.only_client is not None}:
        theirs = candidates(RequestView(endpoint.api, model, needs=streaming, endpoint=endpoint_name,
                                        system_head=own.system_starts),
                      registry, health, now, 0, limit)
        if _ids(theirs) != _ids(decisions):
            # That client's requests may also go on a login that serves it alone, which Envoy cannot tell apart
            # from the others' (the mark is in the body's system prompt, an array json_to_metadata cannot index).
            return None
    clients = _route_clients(settings.clients, decisions, spent)
    if clients == ():
        return None  # no key Envoy checks may send this model's requests
    # Built as a request that does not stream: a fast stream goes to its provider directly, not through the relay
    # (a chat stream's route matches only a body that asked for its usage, which the full path leaves as it is).
    view = RequestView(endpoint.api, model, endpoint=endpoint_name)
    learn = cred.windows is not None or health.remembers(cred.id, first.model.id)  # as Gateway.success_is_news
    forward = route_request(endpoint, ParsedRequest(view, {"model": model}), decisions, secret, None, learn,
                            settings.failover)
    if not forward.handled or forward.plan is None or forward.body is not None:
        return None
    defaults = {k: v for k, v in first.provider.headers.items() if k not in cred.headers}
    skipped = {":path", "content-length", "content-type", ATTEMPT_HEADER, *ENVOY_REQUEST_HEADERS, *defaults,
               *cred.merge_headers}  # merged with the client's value in Envoy (the route's `merge`)
    headers = {k: literal(v) for k, v in forward.set_headers.items() if k not in skipped}
    headers[ROUTE_HEADER] = literal(first.route + FAST_SUFFIX)
    remove = tuple(h for h in forward.remove_headers if h not in headers and h not in defaults
                   and h not in _PLANNED_HEADERS and h not in cred.merge_headers)
    return FastRoute(endpoint_name, endpoint.path, model, forward.set_headers.get(":path", endpoint.path), headers,
                     {k: literal(v) for k, v in defaults.items()}, remove, forward.plan, Attempted.of(first, 1),
                     streams, clients, dict(cred.merge_headers))


def client_path(endpoint: str, model: str) -> str:
    """The path a fast route of this endpoint takes for this model (the same for every model but Gemini's)."""
    return PATHS[endpoint].replace("{model}", model)


def rendered(route: FastRoute) -> dict[str, str]:
    """The headers the route sets, its plan's written in as plan.py writes them (when the routes file is: a
    route kept keeps when it was planned)."""
    metadata = route.plan.to_metadata()
    return {**route.headers, ATTEMPT_HEADER: literal(route.first.header()),
            PLAN_HEADER: literal(metadata[PLAN_NAMESPACE][PLAN_KEY]),
            ENDPOINTS_HEADER: literal(metadata[LB_NAMESPACE][ENDPOINTS_KEY])}


def _ids(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.model.qualified, d.credential.id) for d in decisions]


def literal(value: str) -> str:
    """A value Envoy's header formatter leaves as it is."""
    return value.replace("%", "%%")
