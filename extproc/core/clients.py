"""Who may spend the owner's credentials: client keys, read the way each SDK sends them. Pure.

A presented key is hashed and compared with every configured digest in constant time, so the comparison does
not reveal a key. A key configured as itself (`key:`, from the environment) is also kept as itself, so the fast
path can hand it to Envoy; one configured as its SHA-256 only stays a digest everywhere, and its requests take
the full path. Matching is by glob on what the client asked for and on what resolution chose.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from extproc.core.budget import Budget
from extproc.core.errors import ClientError


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    sha256: bytes = b""  # the key's digest (never the key)
    models: tuple[str, ...] = ()  # glob patterns of model ids or aliases it may use; empty: any
    rpm: int | None = None  # requests per minute (across replicas with state.redis); None: no limit
    budget: Budget | None = None  # USD per day or month (across replicas with state.redis)
    key: str = field(default="", repr=False)  # the key itself, when configured so (never for a `sha256:` key)

    @property
    def checked_by_envoy(self) -> bool:
        """Whether Envoy can check this key by itself (the fast path): it knows the key, and no request needs a
        count shared with other replicas (requests per minute are the processor's, through state.redis)."""
        return bool(self.key) and self.rpm is None

    def may_use(self, *names: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(n, p) for n in names if n for p in self.models)


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    keys: tuple[ClientKey, ...] = ()
    require_key: bool = False

    @property
    def active(self) -> bool:
        return self.require_key or bool(self.keys)

    def named(self, name: str) -> ClientKey | None:
        """The configured key a request was charged to by name (its budget); a key since removed is still named."""
        if not name:
            return None
        return next((k for k in self.keys if k.name == name), ClientKey(name))


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key as the client's SDK sends it: Authorization Bearer (OpenAI), x-api-key (Anthropic),
    x-goog-api-key or ?key= (Gemini)."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name].strip()
    query = headers.get(":path", "").partition("?")[2]
    found = parse_qs(query).get("key") if query else None
    return found[0] if found else None


def identify(policy: ClientPolicy, headers: Mapping[str, str]) -> ClientKey | None:
    """The client key a request carries; None when keys are not required and none is configured. Raises a
    401 ClientError for a missing or unknown key (never saying which keys exist)."""
    if not policy.active:
        return None
    key = presented_key(headers)
    if key is None:
        raise ClientError(401, "missing_api_key", "This gateway needs a client key: send it as your SDK's API key.",
                          retryable=False)
    sent = digest(key)
    match = None
    for candidate in policy.keys:  # every digest is compared: the time does not say which one matched
        if hmac.compare_digest(sent, candidate.sha256):
            match = candidate
    if match is None:
        raise ClientError(401, "invalid_api_key", "The client key is not valid for this gateway.", retryable=False)
    return match


def over_rate(key: ClientKey, rpm: int, wait: int) -> ClientError:
    return ClientError(429, "rate_limit_exceeded", f"The client key {key.name!r} is over its {rpm} requests per "
                       f"minute; retry in {wait}s.", retry_after=wait)


def over_budget(key: ClientKey, budget: Budget, wait: int) -> ClientError:
    return ClientError(429, "budget_exceeded", f"The client key {key.name!r} has spent its ${budget.usd:g} budget for "
                       f"this {budget.per}; it resets in {wait}s.", retry_after=wait)


def forbidden(key: ClientKey, model: str) -> ClientError:
    return ClientError(403, "model_not_allowed", f"The client key {key.name!r} may not use the model {model!r}.",
                       retryable=False)
