"""Who may spend the owner's credentials: client keys, read the way each SDK sends them. Pure.

A presented key is hashed and compared with every configured digest in constant time, so the comparison does
not reveal a key. A key configured as itself (`key:`, from the environment) is also kept as itself, so the fast
path can hand it to Envoy; one configured as its SHA-256 only stays a digest everywhere, and its requests take
the full path. Matching is by glob on what the client asked for and on what resolution chose. A key may belong to
one team, whose budget, requests and tokens per minute all its keys share (its own limits still apply).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

from extproc.core.budget import Budget
from extproc.core.errors import ClientError


@dataclass(frozen=True, slots=True)
class Team:
    """Keys that share a budget and per-minute limits (`clients.teams`)."""

    name: str
    budget: Budget | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def counter(self) -> str:
        """The name its counts and spend are kept under (beside the keys', which are their names)."""
        return team_counter(self.name)

    @property
    def counted_per_request(self) -> bool:
        """Whether its keys' requests need a count shared with other replicas (the processor's, not Envoy's)."""
        return self.rpm is not None or self.tpm is not None


def team_counter(name: str) -> str:
    return f"team:{name}"


def token_counter(counter: str, pattern: str = "") -> str:
    """A tokens-per-minute count's name: a key's or team's counter, with the model glob of a per-model limit.
    Each part is escaped, so no two (counter, pattern) pairs share a name."""
    name = quote(counter, safe="")
    return f"{name}@{quote(pattern, safe='')}" if pattern else name


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    sha256: bytes = b""  # the key's digest (never the key)
    models: tuple[str, ...] = ()  # glob patterns of model ids or aliases it may use; empty: any
    rpm: int | None = None  # requests per minute (across replicas with state.redis); None: no limit
    budget: Budget | None = None  # USD per day or month (across replicas with state.redis)
    key: str = field(default="", repr=False)  # the key itself, when configured so (never for a `sha256:` key)
    tpm: int | None = None  # input + output tokens per minute (across replicas with state.redis); None: no limit
    tpm_per_model: tuple[tuple[str, int], ...] = ()  # (glob of the model asked for, its tokens per minute)
    team: Team | None = None

    @property
    def checked_by_envoy(self) -> bool:
        """Whether Envoy can check this key by itself (the fast path): it knows the key, and no request needs a
        count shared with other replicas (requests and tokens per minute, its own or its team's, are the
        processor's, through state.redis). A budget does not: a spent key's routes are dropped instead."""
        return bool(self.key) and self.rpm is None and self.tpm is None and not self.tpm_per_model \
            and not (self.team is not None and self.team.counted_per_request)

    @property
    def token_limited(self) -> bool:
        return self.tpm is not None or bool(self.tpm_per_model) or self.team is not None and self.team.tpm is not None

    @property
    def budgets(self) -> tuple[tuple[str, str, Budget], ...]:
        """(counter, who in words, budget) of each budget a request of this key spends: its own, its team's."""
        found = []
        if self.budget is not None:
            found.append((self.name, f"The client key {self.name!r}", self.budget))
        if self.team is not None and self.team.budget is not None:
            found.append((self.team.counter, f"The team {self.team.name!r} of the client key {self.name!r}",
                          self.team.budget))
        return tuple(found)

    @property
    def rates(self) -> tuple[tuple[str, str, int], ...]:
        """(counter, who in words, rpm) of each requests-per-minute limit: its own first, then its team's."""
        found = []
        if self.rpm is not None:
            found.append((self.name, f"The client key {self.name!r}", self.rpm))
        if self.team is not None and self.team.rpm is not None:
            found.append((self.team.counter, f"The team {self.team.name!r} of the client key {self.name!r}",
                          self.team.rpm))
        return tuple(found)

    def token_limits(self, model: str) -> tuple[tuple[str, str, int], ...]:
        """(counter, who in words, tpm) of each tokens-per-minute limit a request for `model` (as the client named
        it) is held against, and its usage charged to: the key's, the key's on that model, its team's."""
        found = []
        if self.tpm is not None:
            found.append((token_counter(self.name), f"The client key {self.name!r}", self.tpm))
        for pattern, tpm in self.tpm_per_model:
            if model and fnmatch.fnmatchcase(model, pattern):
                found.append((token_counter(self.name, pattern), f"The client key {self.name!r} on {pattern!r}", tpm))
        if self.team is not None and self.team.tpm is not None:
            found.append((token_counter(self.team.counter), f"The team {self.team.name!r} of the client key "
                          f"{self.name!r}", self.team.tpm))
        return tuple(found)

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


def over_rate(who: str, rpm: int, wait: int) -> ClientError:
    """`who`: in words, as `ClientKey.rates` names it."""
    return ClientError(429, "rate_limit_exceeded", f"{who} is over its {rpm} requests per minute; retry in {wait}s.",
                       retry_after=wait)


def over_tokens(who: str, tpm: int, wait: int) -> ClientError:
    """`who`: in words, as `core.limits.token_limits` names it."""
    return ClientError(429, "rate_limit_exceeded", f"{who} is over its {tpm} tokens per minute; retry in {wait}s.",
                       retry_after=wait)


def over_budget(who: str, budget: Budget, wait: int) -> ClientError:
    """`who`: in words, as `ClientKey.budgets` names it."""
    return ClientError(429, "budget_exceeded", f"{who} has spent its ${budget.usd:g} budget for this {budget.per}; "
                       f"it resets in {wait}s.", retry_after=wait)


def forbidden(key: ClientKey, model: str) -> ClientError:
    return ClientError(403, "model_not_allowed", f"The client key {key.name!r} may not use the model {model!r}.",
                       retryable=False)
