"""The one mutation that sends a request to its decision's provider with its credential. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from extproc.core.headers import (
    ACCOUNT_HEADER,
    API_HEADER,
    ATTEMPT_HEADER,
    ENVOY_REQUEST_HEADERS,
    HANDLED_HEADER,
    INTERNAL_HEADERS,
    LEARN_HEADER,
    LOGIN_HEADER,
    MODEL_HEADER,
    PROVIDER_HEADER,
    RELAY_HEADERS,
    ROUTE_HEADER,
    STREAM_HEADER,
    UPSTREAM_API_HEADER,
    client_value_header,
    header_values,
)
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS, Api, AuthStyle, ProviderSpec
from extproc.core.resolve import Decision
from extproc.core.settings import Credential, FailoverPolicy
from extproc.formats import Endpoint, ParsedRequest
from extproc.formats.base import dumps, without_credentials
from extproc.request.plan import Candidate, Plan, attempt_header
from extproc.request.sigv4 import SIGNED_HEADERS, signed_headers
from extproc.request.transforms import Outgoing, Shaper, Transform, asks_without_usage, selected
from extproc.translate.held import carries_translated, drop_translated
from extproc.usage.account import Account


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream with these changes."""

    decision: Decision
    set_headers: Mapping[str, str] = field(repr=False)  # overwrite; carries the credential
    remove_headers: tuple[str, ...]
    body: bytes | None  # None: the body goes as it came
    answer: tuple[Callable[[bool, int], Shaper], ...] = ()  # the answer's shapers: (streamed, status) → shaper
    plan: Plan | None = None  # what every attempt of the request follows (router level only)
    handled: bool = True  # this mutation makes the first attempt; False: its own processor builds it


def build_forward(endpoint: Endpoint, parsed: ParsedRequest, decision: Decision, transforms: tuple[Transform, ...],
                  secret: str, client_headers: Mapping[str, str], usage: bool = False) -> Forward:
    """Rewrite the model, apply the transforms data selects for the decision (`selected`, once per stream: the
    caller's), set the credential; the body is serialised once. With `usage` (accounting), an OpenAI-style stream
    is asked for its usage."""
    provider, api, cred = decision.provider, endpoint.api, decision.credential
    served = provider.body_model(api, decision.model.id) if api in provider.apis else decision.model.id
    changed = endpoint.spec.rewrite(parsed.doc, served)
    account = Account.carried(client_headers)  # later attempts: what the client's body said
    out = Outgoing(endpoint.upstream_rest(served), parsed.doc, changed, {},
                   hides_usage=account is not None and account.hide_usage, client_headers=client_headers)
    for transform in transforms:
        transform.request(out, endpoint, decision)
    api = out.api or api  # a translated request leaves in the provider's API
    if out.api is not None and (named := provider.body_model(api, decision.model.id)) != decision.model.id:
        out.doc["model"] = named  # translation wrote the catalog's id
    if out.api is None and carries_translated(endpoint.name, parsed.body) and drop_translated(endpoint.name, out.doc):
        out.changed = True  # back to its own API: without the thinking another provider wrote
    if usage and out.api is None and provider.stream_usage and asks_without_usage(endpoint, out.doc):
        options = out.doc.get("stream_options")
        out.doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        out.changed = True
    new_body = dumps(out.doc) if out.changed else None
    set_headers = {**_route_headers(decision), **credential_headers(provider, api, cred, secret)}
    if cred.refreshable:  # a 401 gets one retry on this login (or Google token), with a refreshed token
        set_headers[LOGIN_HEADER] = cred.id
    if "streaming" in parsed.view.needs:  # through the relay: a failure midway ends with an error event
        set_headers[STREAM_HEADER] = "1"
    for name, value in cred.merge_headers.items():
        set_headers[name] = merge_header_values(client_headers.get(name), value)
    upstream_path = provider.upstream_path(api, out.rest, decision.model.id, out.segment)
    if upstream_path != endpoint.path:
        set_headers[":path"] = upstream_path
    if new_body is not None:
        set_headers["content-length"] = str(len(new_body))
    elif "content-length" not in client_headers:  # sent chunked, or inflated by Envoy: the body is whole here
        set_headers["content-length"] = str(parsed.size)
    if not is_json_media(client_headers.get("content-type", "")):
        # Any content-type is read as JSON (curl -d says form-urlencoded, fetch text/plain); the provider must
        # read the body as the gateway did, not as a form or as nothing.
        set_headers["content-type"] = "application/json"
    for name, value in provider.headers.items():  # defaults: the client's own value wins
        if name not in client_headers and name not in set_headers:
            set_headers[name] = value
    set_headers.update(cred.headers)  # the credential's (e.g. its ChatGPT account): always ours
    set_headers.update(out.headers)  # what a transform needs (e.g. an uncompressed answer)
    if cred.aws is not None:  # signed last, over the path and body as they leave
        set_headers.update(signed_headers(secret, cred.aws, provider.upstream.authority, "POST", upstream_path,
                                          new_body if new_body is not None else parsed.body))
    remove = (*(h for h in CLIENT_CREDENTIAL_HEADERS if h not in set_headers),
              *(h for h in out.removed if h not in set_headers))
    return Forward(decision, set_headers, remove, new_body,
                   (*(t.answer for t in transforms if t.answer), *out.answers))


def is_json_media(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def credential_headers(provider: ProviderSpec, api: Api, cred: Credential, secret: str) -> dict[str, str]:
    """The header(s) that carry a credential's secret to its provider (AWS keys carry none: they sign)."""
    if cred.aws is not None:
        return {}
    if cred.auth is AuthStyle.BEARER:
        return {"authorization": f"Bearer {secret}"}
    if cred.auth is not None:
        return {cred.auth.value: secret}
    return provider.auth_headers(api, secret)


def _settable(decisions: list[Decision], selections: list[tuple[Transform, ...]]) -> list[str]:
    """The headers the attempts of these decisions may set: routing, credentials, provider and login headers,
    the path, and what their transforms (`selections`, one per decision) add (the header map is shared between
    attempts)."""
    names = [PROVIDER_HEADER, MODEL_HEADER, ROUTE_HEADER, LOGIN_HEADER, STREAM_HEADER, ":path",
             *CLIENT_CREDENTIAL_HEADERS]
    if any(d.credential.aws is not None for d in decisions):
        names += SIGNED_HEADERS
    for decision, transforms in zip(decisions, selections, strict=True):
        names += [*decision.provider.headers, *decision.credential.headers, *decision.credential.merge_headers]
        names += [h for transform in transforms for h in transform.headers]
    return list(dict.fromkeys(names))


_DEFAULT_FAILOVER = FailoverPolicy()


def failover_headers(policy: FailoverPolicy, planned: int) -> dict[str, str]:
    """What Envoy's router retries, per request: the attempts of the plan, the statuses that retry, and how long
    an attempt may wait for its first byte (the route itself retries connect failures, resets and the gateway's own
    reply to an attempt no provider answered, `x-extproc-failure`, whatever its status). Set on
    every request, so `failover` applies on a reload without a change to Envoy."""
    return {"x-envoy-max-retries": str(planned - 1), "x-envoy-retry-on": "retriable-status-codes",
            "x-envoy-retriable-status-codes": ",".join(map(str, policy.statuses)),
            "x-envoy-upstream-rq-per-try-timeout-ms": str(round(policy.first_byte_timeout * 1000))}


def route_request(endpoint: Endpoint, parsed: ParsedRequest, decisions: list[Decision], secret: str,
                  client_headers: Mapping[str, str] | None, learn_success: bool = False,
                  failover: FailoverPolicy = _DEFAULT_FAILOVER, account: Account | None = None) -> Forward:
    """The router-level mutation: the plan every attempt follows, and the first attempt itself when it can; with
    accounting, the request's account goes with every attempt (a stream is asked for its usage).

    A first attempt whose transforms reshape the body is left to its own processor: later attempts get the
    body this mutation leaves, and must never get one reshaped for another provider.

    `client_headers` None: planned ahead of any request (a fast route), so the client's values are not known.
    Then only what the first attempt sets is undone for later ones (removed); any other header a later attempt
    may set is left as the shared map holds it, which is the client's own until a later attempt changes it.
    """
    first = decisions[0]
    candidates = tuple(Candidate.of(d) for d in decisions)
    selections = [selected(d, "streaming" in parsed.view.needs) for d in decisions]
    seen = client_headers if client_headers is not None else {}
    if selections[0]:
        forward = Forward(first, _route_headers(first), CLIENT_CREDENTIAL_HEADERS, None, handled=False)
    else:
        forward = build_forward(endpoint, parsed, first, (), secret, seen, account is not None)
    # Every header any attempt may set, with the client's value to put back (never its credentials).
    restore: dict[str, str | None] = {name: None if name in _NEVER_RESTORED else seen.get(name)
                                      for name in _settable(decisions, selections)}
    if client_headers is None:  # unknown: only what the first attempt sets goes
        first_sets = set(_settable(decisions[:1], selections[:1]))
        restore = {name: None for name in restore if name in _NEVER_RESTORED or name in first_sets}
    query = without_credentials(endpoint.query)
    path = endpoint.path.partition("?")[0] + (f"?{query}" if query else "")  # a client's ?key= stays out
    restore[":path"] = path
    plan = Plan(path, first.requested, parsed.view.mode, first.at, candidates, restore)
    headers = {**forward.set_headers, **failover_headers(failover, len(decisions)),
               ATTEMPT_HEADER: attempt_header(first, 1), API_HEADER: endpoint.api.value}
    if forward.handled:
        headers[HANDLED_HEADER] = "1"
    if learn_success:
        headers[LEARN_HEADER] = "1"
    if account is not None:
        headers[ACCOUNT_HEADER] = account.header()
    # Nothing a client sends may steer the attempts: our own headers, and Envoy's retry and timeout ones.
    # A client's own "kept value" of a header a login joins to is forged too (a fast route's Lua keeps the real one,
    # after Envoy took any a client sent: the route must not take it off).
    kept = [] if client_headers is None else \
        sorted({client_value_header(name) for d in decisions for name in d.credential.merge_headers})
    forged = tuple(h for h in (*INTERNAL_HEADERS, LOGIN_HEADER, STREAM_HEADER, ACCOUNT_HEADER, UPSTREAM_API_HEADER,
                               *RELAY_HEADERS, *kept,
                               *ENVOY_REQUEST_HEADERS) if h not in headers)
    return replace(forward, set_headers=headers, remove_headers=(*forward.remove_headers, *forged), plan=plan)


# A later attempt sets its own or none.
_NEVER_RESTORED = frozenset({*CLIENT_CREDENTIAL_HEADERS, LOGIN_HEADER, STREAM_HEADER, UPSTREAM_API_HEADER,
                             *SIGNED_HEADERS})


def _route_headers(decision: Decision) -> dict[str, str]:
    return {PROVIDER_HEADER: decision.provider.name, MODEL_HEADER: decision.model.id, ROUTE_HEADER: decision.route}


def merge_header_values(client: str | None, ours: str) -> str:
    """A comma-separated header with our values added to the client's (e.g. anthropic-beta flags)."""
    values = header_values(client)
    values += [v for v in header_values(ours) if v not in values]
    return ",".join(values)
