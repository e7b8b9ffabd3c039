"""The one mutation that sends a request to its decision's provider with its credential. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson

from extproc.core.headers import MODEL_HEADER, REASON_HEADER, ROUTE_HEADER
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS, AuthStyle
from extproc.core.resolve import Decision
from extproc.formats import Endpoint, ParsedRequest
from extproc.formats.transforms import Outgoing, Shaper, selected


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream with these changes."""

    decision: Decision
    set_headers: Mapping[str, str] = field(repr=False)  # overwrite; carries the credential
    remove_headers: tuple[str, ...]
    body: bytes | None  # None: the body goes as it came
    answer: tuple[Callable[[bool], Shaper], ...] = ()  # shapers the answer passes through (streamed? → shaper)


def build_forward(endpoint: Endpoint, parsed: ParsedRequest, decision: Decision, secret: str,
                  client_headers: Mapping[str, str]) -> Forward:
    """Rewrite the model, apply the transforms data selects, set the credential; the body is serialised once."""
    provider, api, cred = decision.provider, endpoint.api, decision.credential
    changed = endpoint.spec.rewrite(parsed.doc, decision.model.id)
    out = Outgoing(endpoint.upstream_rest(decision.model.id), parsed.doc, changed, {})
    transforms = selected(decision)
    for transform in transforms:
        transform.request(out, endpoint, decision)
    new_body = orjson.dumps(out.doc) if out.changed else None
    auth = {"authorization": f"Bearer {secret}"} if cred.auth is AuthStyle.BEARER else \
        {cred.auth.value: secret} if cred.auth is not None else provider.auth_headers(api, secret)
    set_headers = {ROUTE_HEADER: provider.name, MODEL_HEADER: decision.model.id, REASON_HEADER: decision.why, **auth}
    for name, value in cred.merge_headers.items():
        set_headers[name] = merge_header_values(client_headers.get(name), value)
    upstream_path = provider.upstream_path(api, out.rest)
    if upstream_path != endpoint.path:
        set_headers[":path"] = upstream_path
    if new_body is not None:
        set_headers["content-length"] = str(len(new_body))
    for name, value in provider.headers.items():  # defaults: the client's own value wins
        if name not in client_headers and name not in set_headers:
            set_headers[name] = value
    set_headers.update(cred.headers)  # the credential's (e.g. its ChatGPT account): always ours
    set_headers.update(out.headers)  # what a transform needs (e.g. an uncompressed answer)
    remove = tuple(h for h in CLIENT_CREDENTIAL_HEADERS if h not in set_headers)
    return Forward(decision, set_headers, remove, new_body, tuple(t.answer for t in transforms if t.answer))


def merge_header_values(client: str | None, ours: str) -> str:
    """A comma-separated header with our values added to the client's (e.g. anthropic-beta flags)."""
    values = [v.strip() for v in (client or "").split(",") if v.strip()]
    values += [v for v in (x.strip() for x in ours.split(",")) if v and v not in values]
    return ",".join(values)
