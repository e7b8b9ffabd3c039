"""The request path as plain data: request in, forward-or-reply out. No gRPC here; the edge adapts it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from extproc.core.config import Settings
from extproc.core.errors import ClientError
from extproc.core.health import Block, Health
from extproc.core.registry import Registry
from extproc.core.resolve import Decision, resolve
from extproc.discovery.merge import merge_discovered
from extproc.discovery.parse import Listed
from extproc.formats import api_for_path, match_endpoint
from extproc.formats.errors import error_body, error_headers
from extproc.providers import CLIENT_CREDENTIAL_HEADERS, Api

ROUTE_HEADER = "x-extproc-provider"
MODEL_HEADER = "x-extproc-model"
REASON_HEADER = "x-extproc-route"


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream with these changes."""

    decision: Decision
    set_headers: Mapping[str, str] = field(repr=False)  # overwrite; carries the credential
    default_headers: Mapping[str, str]  # add only when the client did not send them
    remove_headers: tuple[str, ...]
    body: bytes | None  # None: the body goes as it came


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client directly; nothing goes upstream."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    error: ClientError | None = field(default=None)


def reject(api: Api, err: ClientError) -> Reply:
    return Reply(err.status, error_headers(err), error_body(api, err), err)


class Gateway:
    """Holds the swappable registry and the health state; each method is one step of the request path."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.registry = Registry.build(settings)
        self.health = Health(settings.health)
        self._clock = clock
        self._turns = itertools.count()

    def now(self) -> float:
        return self._clock()

    def update_models(self, lists: Mapping[str, tuple[Listed, ...]]) -> None:
        """Swap in a registry that includes what discovery found (one assignment: readers see old or new)."""
        self.registry = Registry.build(self.settings, models=merge_discovered(self.settings.models, lists))

    def on_headers(self, method: str, path: str, end_of_stream: bool) -> Reply | None:
        """Answer what needs no body; None means: wait for the body."""
        bare = path.partition("?")[0]
        if bare == "/v1/models" or bare.startswith("/v1/models/") and ":" not in bare:
            # Envoy serves GET here on a direct route to the Models service; other methods have no meaning.
            if method != "GET":
                return reject(Api.OPENAI, ClientError(405, "method_not_allowed", f"{bare} takes GET, not {method}."))
            return reject(Api.OPENAI, ClientError(404, "unknown_endpoint", f"{bare} is served by the Models service; "
                                                  "use the Envoy config `extproc envoy-config` prints."))
        endpoint = match_endpoint(path)
        if endpoint is None:
            return reject(api_for_path(path), ClientError(
                404, "unknown_endpoint", f"{method} {bare} is not an endpoint this gateway serves."))
        if method != "POST":
            return reject(endpoint.api, ClientError(405, "method_not_allowed", f"{bare} takes POST, not {method}."))
        if end_of_stream:
            return reject(endpoint.api, ClientError(400, "invalid_request", "The request body is empty."))
        return None

    def on_body(self, path: str, body: bytes) -> Forward | Reply:
        endpoint = match_endpoint(path)
        if endpoint is None:  # on_headers answered these already; kept for a direct caller
            return reject(api_for_path(path), ClientError(404, "unknown_endpoint", f"{path} is not served here."))
        try:
            parsed = endpoint.read(body)
            decision = resolve(parsed.view, self.registry, self.health, self._clock(), next(self._turns))
        except ClientError as err:
            return reject(endpoint.api, err)
        provider, api = decision.provider, endpoint.api
        new_body = endpoint.new_body(parsed, decision)
        set_headers = {
            ROUTE_HEADER: provider.name,
            MODEL_HEADER: decision.model.id,
            REASON_HEADER: decision.why,
            **provider.auth_headers(api, decision.credential.secret),
        }
        upstream_path = provider.upstream_path(api, endpoint.upstream_rest(decision))
        if upstream_path != path:
            set_headers[":path"] = upstream_path
        if new_body is not None:
            set_headers["content-length"] = str(len(new_body))
        remove = tuple(h for h in CLIENT_CREDENTIAL_HEADERS if h not in set_headers)
        return Forward(decision, set_headers, provider.headers, remove, new_body)

    def on_response(self, decision: Decision, status: int, headers: Mapping[str, str]) -> Block | None:
        """Learn from the upstream's response headers; returns the block it caused, if any."""
        now = self._clock()
        retry_after = parse_retry_after(headers, now)
        return self.health.observe(decision.credential.id, decision.model.id, status, retry_after, now)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None when absent or bad."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - now)
    except (TypeError, ValueError):
        return None
