"""The request path as plain data: request in, forward-or-reply out. No gRPC here; the edge adapts it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol

import orjson

from extproc.core.errors import ClientError, CredentialUnavailable
from extproc.core.health import Block, Health
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS, Api, AuthStyle
from extproc.core.registry import Registry
from extproc.core.resolve import Decision, resolve
from extproc.core.settings import Credential, Settings
from extproc.discovery.merge import merge_discovered
from extproc.discovery.parse import Listed
from extproc.formats import Endpoint, ParsedRequest, api_for_path, match_endpoint
from extproc.formats.anthropic import prepend_system
from extproc.formats.errors import error_body, error_headers
from extproc.formats.gemini import codeassist_request

log = logging.getLogger("extproc.request")
_SECRET_ATTEMPTS = 3  # credentials tried per request when a login's token cannot be had
_INLINE_PARSE_BYTES = 1 << 20  # larger bodies are parsed in a thread: other streams keep moving

ROUTE_HEADER = "x-extproc-provider"
MODEL_HEADER = "x-extproc-model"
REASON_HEADER = "x-extproc-route"


@dataclass(frozen=True, slots=True)
class Forward:
    """Send the request upstream with these changes."""

    decision: Decision
    set_headers: Mapping[str, str] = field(repr=False)  # overwrite; carries the credential
    remove_headers: tuple[str, ...]
    body: bytes | None  # None: the body goes as it came
    unwrap: str | None = None  # the response needs unwrapping (codeassist) before the client sees it


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client directly; nothing goes upstream."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    error: ClientError | None = field(default=None)


class SecretSource(Protocol):
    """Where a credential's secret comes from at request time (a login's token may need a refresh)."""

    async def secret(self, credential: Credential) -> str: ...

    def invalidate(self, credential: Credential) -> bool:
        """The upstream refused this credential's token (401): True if a fresh one is worth fetching."""

    def confirm(self, credential: Credential) -> None:
        """The upstream took this credential's token."""


class StaticSecrets:
    """API keys only: the secret is in the credential."""

    async def secret(self, credential: Credential) -> str:
        if credential.account is not None:
            raise CredentialUnavailable(f"no account manager for login {credential.id}", permanent=False)
        return credential.secret

    def invalidate(self, credential: Credential) -> bool:
        return False  # an API key cannot be refreshed; health suspends it

    def confirm(self, credential: Credential) -> None:
        pass


def reject(api: Api, err: ClientError) -> Reply:
    return Reply(err.status, error_headers(err), error_body(api, err), err)


def internal_error(path: str) -> Reply:
    """What a client gets when the gateway itself failed: its own API's envelope, and nothing sent upstream."""
    return reject(api_for_path(path), ClientError(500, "internal_error", "The gateway failed to route this request."))


class Gateway:
    """Holds the swappable registry and the health state; each method is one step of the request path."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 secrets: SecretSource | None = None) -> None:
        self.settings = settings
        self.secrets: SecretSource = secrets or StaticSecrets()
        self.logins: tuple[Credential, ...] = ()
        self._lists: Mapping[str, tuple[Listed, ...]] = {}
        self.registry = Registry.build(settings)
        self.health = Health(settings.health)
        self._clock = clock
        self._turns = itertools.count()

    def now(self) -> float:
        return self._clock()

    def update_models(self, lists: Mapping[str, tuple[Listed, ...]]) -> None:
        """Swap in a registry that includes what discovery found (one assignment: readers see old or new)."""
        self._lists = lists
        self._rebuild()

    def update_logins(self, logins: tuple[Credential, ...]) -> None:
        """Swap in a registry whose credentials include these logins."""
        self.logins = logins
        self._rebuild()

    def _rebuild(self) -> None:
        models = merge_discovered(self.settings.models, self._lists, frozenset(self.settings.aliases))
        self.registry = Registry.build(self.settings, extra_credentials=self.logins, models=models)

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

    async def on_body(self, path: str, body: bytes, client_headers: Mapping[str, str] | None = None) -> Forward | Reply:
        """Resolve, fetch the credential's secret (a login may refresh), and build the one mutation."""
        endpoint = match_endpoint(path)
        if endpoint is None:  # on_headers answered these already; kept for a direct caller
            return reject(api_for_path(path), ClientError(404, "unknown_endpoint", f"{path} is not served here."))
        try:
            parsed = endpoint.read(body) if len(body) < _INLINE_PARSE_BYTES else \
                await asyncio.to_thread(endpoint.read, body)
        except ClientError as err:
            return reject(endpoint.api, err)
        for _ in range(_SECRET_ATTEMPTS):
            try:
                decision = resolve(parsed.view, self.registry, self.health, self._clock(), next(self._turns))
            except ClientError as err:
                return reject(endpoint.api, err)
            try:
                secret = await self.secrets.secret(decision.credential)
            except CredentialUnavailable as exc:
                # Fail closed for this credential, and let resolution pick the next one.
                log.warning("credential %s unavailable: %s", decision.credential.id, exc.reason)
                until = math.inf if exc.permanent else self._clock() + self.settings.health.server_error_cooldown
                self.health.suspend(decision.credential.id, exc.reason, until)
                continue
            return build_forward(endpoint, parsed, decision, secret, client_headers or {})
        return reject(endpoint.api, ClientError(503, "credentials_unavailable",
                                                "No credential for this model could be used right now."))

    def on_response(self, decision: Decision, status: int, headers: Mapping[str, str]) -> Block | None:
        """Learn from the upstream's response headers; returns the block it caused, if any."""
        now = self._clock()
        cred = decision.credential
        if cred.account is not None:
            if status == 401 and self.secrets.invalidate(cred):
                return None  # a login's token is refreshed, not the login suspended
            if 200 <= status < 300:
                self.secrets.confirm(cred)
        if status == 404 and (decision.endpoint == "completions" or not self.registry.lookup(decision.model.qualified)):
            return None  # a legacy endpoint or a made-up model: the client's mistake, not the model's absence
        retry_after = parse_retry_after(headers, now)
        return self.health.observe(cred.id, decision.model.id, status, retry_after, now, decision.at,
                                   decision.endpoint)


def build_forward(endpoint: Endpoint, parsed: ParsedRequest, decision: Decision, secret: str,
                  client_headers: Mapping[str, str]) -> Forward:
    """The mutation that sends this request to the decision's provider with its credential. Pure."""
    provider, api, cred = decision.provider, endpoint.api, decision.credential
    changed = endpoint.new_body(parsed, decision) is not None
    if cred.system_prefix and api is Api.ANTHROPIC:
        changed = prepend_system(parsed.doc, cred.system_prefix) or changed
    rest = endpoint.upstream_rest(decision)
    if provider.transform == "codeassist":
        rest, doc = codeassist_request(endpoint, decision, parsed.doc, cred.project)
        new_body: bytes | None = orjson.dumps(doc)
    else:
        new_body = orjson.dumps(parsed.doc) if changed else None
    auth = {"authorization": f"Bearer {secret}"} if cred.auth is AuthStyle.BEARER else \
        {cred.auth.value: secret} if cred.auth is not None else provider.auth_headers(api, secret)
    set_headers = {ROUTE_HEADER: provider.name, MODEL_HEADER: decision.model.id, REASON_HEADER: decision.why, **auth}
    for name, value in cred.merge_headers.items():
        set_headers[name] = merge_header_values(client_headers.get(name), value)
    upstream_path = provider.upstream_path(api, rest)
    if upstream_path != endpoint.path:
        set_headers[":path"] = upstream_path
    if new_body is not None:
        set_headers["content-length"] = str(len(new_body))
    for name, value in provider.headers.items():  # defaults: the client's own value wins
        if name not in client_headers and name not in set_headers:
            set_headers[name] = value
    set_headers.update(cred.headers)  # the credential's (e.g. its ChatGPT account): always ours
    if provider.transform == "codeassist":
        set_headers["accept-encoding"] = "identity"  # the answer is unwrapped here: it must come uncompressed
    remove = tuple(h for h in CLIENT_CREDENTIAL_HEADERS if h not in set_headers)
    return Forward(decision, set_headers, remove, new_body,
                   unwrap="codeassist" if provider.transform == "codeassist" else None)


def merge_header_values(client: str | None, ours: str) -> str:
    """A comma-separated header with our values added to the client's (e.g. anthropic-beta flags)."""
    values = [v.strip() for v in (client or "").split(",") if v.strip()]
    values += [v for v in (x.strip() for x in ours.split(",")) if v and v not in values]
    return ",".join(values)


_MAX_RETRY_AFTER = 86400.0  # a day: beyond that an upstream's number is not a plan


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date), at most a day; None when absent."""
    seconds = _retry_after_seconds(headers, now)
    return None if seconds is None else min(max(0.0, seconds), _MAX_RETRY_AFTER)


def _retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    raw_ms = _number(headers.get("retry-after-ms"))
    if raw_ms is not None:
        return raw_ms / 1000
    raw = headers.get("retry-after")
    if not raw:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        return parsedate_to_datetime(raw).timestamp() - now
    except (TypeError, ValueError):
        return None


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return None if value is None or math.isnan(value) else value
