"""Fetching providers' model lists in the background, with a TTL and the last good list kept on failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from extproc.core.errors import CredentialUnavailable
from extproc.core.providers import ProviderSpec
from extproc.core.secrets import SecretSource, StaticSecrets
from extproc.core.settings import Credential, Settings
from extproc.discovery.parse import Listed, ListError, parse_model_list
from extproc.request.mutation import credential_headers

log = logging.getLogger("extproc.discovery")
_MAX_PAGES = 10


FIRST_LIST_RETRY = 10.0  # s: a provider whose first list failed is asked again this soon (Copilot's models are
# all in its list), later failures wait their TTL with the last good list


@dataclass(slots=True)
class _ProviderState:
    models: tuple[Listed, ...] | None = None  # the last good list
    fetched_at: float = 0.0
    failing: bool = False  # inside a failure episode: logged once, until a success
    last_error: str | None = None


@dataclass(slots=True)
class Discovery:
    """Keeps one model list per provider fresh; calls `on_update` with all lists whenever one changes."""

    settings: Settings
    client: httpx.AsyncClient
    on_update: Callable[[Mapping[str, tuple[Listed, ...]]], None]
    clock: Callable[[], float] = time.monotonic
    secrets: SecretSource = field(default_factory=StaticSecrets)  # a login's token (the account manager)
    logins: Callable[[], tuple[Credential, ...]] = tuple  # the logins there are now
    _state: dict[str, _ProviderState] = field(default_factory=dict)

    def targets(self) -> list[tuple[ProviderSpec, tuple[Credential, ...]]]:
        """Providers to ask: discovery on, and the credentials to ask with, in turn until one is available (no
        credential, no call). A provider that takes no API keys (Copilot) is asked with a login of its own: its
        list is that login's."""
        out = []
        for provider in self.settings.providers.values():
            if provider.discovery is None or not provider.discovery.enabled:
                continue
            creds = tuple(c for c in self.settings.credentials if c.provider == provider.name)
            if not creds and provider.api_key_env is None:
                creds = tuple(c for c in self.logins() if c.provider == c.route == provider.name)
            if creds:
                out.append((provider, creds))
        return out

    def lists(self) -> dict[str, tuple[Listed, ...]]:
        return {name: s.models for name, s in self._state.items() if s.models is not None}

    async def refresh_due(self) -> None:
        """Refresh every provider whose list is older than its TTL, concurrently."""
        now = self.clock()
        due = [(p, c) for p, c in self.targets()
               if p.discovery is not None and (self._state.get(p.name) is None
                                               or now - self._state[p.name].fetched_at >= p.discovery.ttl)]
        if not due:
            return
        changed = await asyncio.gather(*(self._refresh(p, c) for p, c in due))
        if any(changed):
            self.on_update(self.lists())

    async def run(self, tick: float = 1.0) -> None:
        while True:
            try:
                await self.refresh_due()
            except Exception:
                log.exception("discovery pass failed; retrying at the next tick")
            await asyncio.sleep(tick)

    async def _refresh(self, provider: ProviderSpec, creds: tuple[Credential, ...]) -> bool:
        state = self._state.setdefault(provider.name, _ProviderState())
        state.fetched_at = self.clock()  # a failure waits a TTL too: no hammering a broken provider
        try:
            models = await self._fetch(provider, creds)
        except Exception as exc:  # whatever a provider answers, the loop and the other providers go on
            state.last_error = _describe(exc)
            if state.models is None and provider.discovery is not None:  # no list yet: try again soon, not in a TTL
                state.fetched_at -= max(0.0, provider.discovery.ttl - FIRST_LIST_RETRY)
            if not state.failing:
                kept = f"keeping the last good list ({len(state.models)} models)" if state.models is not None \
                    else "using the catalog"
                log.warning("discovery provider=%s failed: %s; %s", provider.name, state.last_error, kept)
            state.failing = True
            return False
        if state.failing:
            log.info("discovery provider=%s recovered: %d models", provider.name, len(models))
        state.failing, state.last_error = False, None
        changed = state.models != models
        state.models = models
        return changed

    async def _secret(self, creds: tuple[Credential, ...]) -> tuple[Credential, str]:
        """The first credential with a secret to give (a suspended login, or one whose token cannot be had now,
        has none); the last one's reason when none has."""
        for cred in creds[:-1]:
            try:
                return cred, await self.secrets.secret(cred)
            except CredentialUnavailable:
                continue
        return creds[-1], await self.secrets.secret(creds[-1])

    async def _fetch(self, provider: ProviderSpec, creds: tuple[Credential, ...]) -> tuple[Listed, ...]:
        spec = provider.discovery
        assert spec is not None
        url, headers = list_request(provider, *await self._secret(creds))
        models: list[Listed] = []
        params: dict[str, str] = {}
        for _ in range(_MAX_PAGES):
            response = await self.client.get(url, headers=headers, params=params, timeout=spec.timeout)
            if response.status_code != 200:
                raise ListError(f"HTTP {response.status_code}")
            page, cursor = parse_model_list(spec.style, response.content)
            models.extend(page)
            if cursor is None:
                break
            params = {"pageToken": cursor} if spec.style == "gemini" else {"after_id": cursor}
        return tuple(models)


def list_request(provider: ProviderSpec, cred: Credential, secret: str) -> tuple[str, dict[str, str]]:
    """Where and how to ask a provider for its model list with an API key or a login's token (never in the
    URL)."""
    spec = provider.discovery
    assert spec is not None
    return provider.base_url.rstrip("/") + spec.path, {**provider.headers, **cred.headers,
                                                       **credential_headers(provider, spec.api, cred, secret)}


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, ListError):
        return str(exc)
    if isinstance(exc, CredentialUnavailable):
        return f"no token to ask with ({exc.reason})"
    return type(exc).__name__  # other messages may carry the URL or a header: the type says enough
