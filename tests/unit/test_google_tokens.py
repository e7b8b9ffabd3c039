"""Vertex AI's Google tokens: one fetch across the processes sharing a store, refreshed ahead of expiry, a refused
token refreshed once (then left to health), and what a fast route may carry. The token endpoint is a counting
function; the store is the real file store (the one the workers of a replica share)."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import google.auth.exceptions
import pytest

from extproc.auth.google import GoogleTokens, token_id
from extproc.auth.store import TokenStore
from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import StaticSecrets
from extproc.core.settings import Credential, GoogleAuth

AUTH = GoogleAuth("/keys/gateway.json")
VERTEX = Credential(id="vertex", provider="vertex", google=AUTH)
KEY = Credential(id="openai", provider="openai", secret="sk-static")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Google:
    """The token endpoint: a new token per call, good for `life` seconds."""

    def __init__(self, clock: Clock, life: float = 3600.0) -> None:
        self.clock, self.life, self.issued, self.refuse = clock, life, [], False

    def __call__(self, auth: GoogleAuth, verify: ssl.SSLContext | bool) -> tuple[str, float | None]:
        if self.refuse:
            raise google.auth.exceptions.RefreshError("invalid_grant: Invalid JWT Signature.")
        self.issued.append(f"ya29.unit-{len(self.issued) + 1}-{os.urandom(4).hex()}")
        return self.issued[-1], self.clock.now + self.life


class Logins(StaticSecrets):
    """The inner source: API keys, and no login to route."""

    def route_token(self, credential: Credential) -> str | None:
        return None

    def watch_tokens(self, callback: object) -> None:
        pass


def tokens(store: TokenStore | None, google: Google, clock: Clock, skew: float = 300.0) -> GoogleTokens:
    return GoogleTokens(Logins(), store, skew=skew, clock=clock, fetch=google)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "google-tokens.json")


def test_processes_sharing_a_store_fetch_one_token(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    workers = [tokens(store, google, clock) for _ in range(3)]

    async def run() -> list[str]:
        return [await w.secret(VERTEX) for w in workers] + [await workers[0].secret(VERTEX)]

    got = asyncio.run(run())
    assert len(google.issued) == 1 and set(got) == {google.issued[0]}
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert store.get(token_id(AUTH)) is not None and store.load()[0].kind == "google"


def test_other_secrets_come_from_the_inner_source(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    assert asyncio.run(tokens(store, google, clock).secret(KEY)) == "sk-static" and not google.issued


def test_a_token_within_the_skew_is_refreshed_once_and_adopted_by_the_others(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    first, second = tokens(store, google, clock), tokens(store, google, clock)

    async def run() -> None:
        old = await first.secret(VERTEX)
        assert await second.secret(VERTEX) == old
        clock.now += 3600 - 200  # within the skew: it still serves while one refresh runs behind
        assert await first.secret(VERTEX) == old
        await first.look()  # waits for the refresh the request started, and starts no other
        assert first.route_token(VERTEX) == google.issued[-1] != old
        await second.look()  # reads the store: adopts it
        assert second.route_token(VERTEX) == google.issued[-1]
        assert await second.secret(VERTEX) == google.issued[-1]

    asyncio.run(run())
    assert len(google.issued) == 2  # the second adopted the first's refresh: no fetch of its own


def test_a_refused_token_is_refreshed_once_then_left_to_health(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    source = tokens(store, google, clock)

    async def run() -> None:
        old = await source.secret(VERTEX)
        assert source.invalidate(VERTEX)  # Vertex answered 401: refreshed before its next use
        assert source.route_token(VERTEX) is None  # no fast route carries a refused token
        new = await source.secret(VERTEX)
        assert new != old and source.awaits_confirmation(VERTEX)
        assert source.route_token(VERTEX) is None  # nor one fresh from a refusal, until Vertex takes it
        assert not source.invalidate(VERTEX)  # refused again: no loop of refreshes
        source.confirm(VERTEX)
        assert not source.awaits_confirmation(VERTEX)

    asyncio.run(run())
    assert len(google.issued) == 2


def test_a_refused_token_another_process_replaced_is_adopted_not_fetched(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    first, second = tokens(store, google, clock), tokens(store, google, clock)

    async def run() -> None:
        old = await first.secret(VERTEX)
        await second.secret(VERTEX)
        assert first.invalidate(VERTEX)
        new = await first.secret(VERTEX)
        assert second.invalidate(VERTEX)  # the same old token refused on the other process
        assert await second.secret(VERTEX) == new != old
        assert not second.awaits_confirmation(VERTEX)  # adopted, not fresh from its own refresh

    asyncio.run(run())
    assert len(google.issued) == 2


def test_a_route_carries_a_token_only_while_it_is_far_from_expiry(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    source = tokens(store, google, clock)
    assert source.route_token(VERTEX) is None  # never fetched for a route: the full path fetches first
    token = asyncio.run(source.secret(VERTEX))
    assert source.route_token(VERTEX) == token
    clock.now += 3600 - 29
    assert source.route_token(VERTEX) is None


def test_no_token_fails_closed_without_the_endpoints_answer(store: TokenStore, clock: Clock) -> None:
    google = Google(clock)
    google.refuse = True
    with pytest.raises(CredentialUnavailable, match="no Google access token for vertex: invalid_grant") as caught:
        asyncio.run(tokens(store, google, clock).secret(VERTEX))
    assert not caught.value.permanent and store.load() == []


def test_an_unreachable_store_still_gets_a_token(tmp_path: Path, clock: Clock) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    google = Google(clock)
    token = asyncio.run(tokens(TokenStore(blocked / "google-tokens.json"), google, clock).secret(VERTEX))
    assert token == google.issued[0]


def test_the_shared_token_is_named_by_its_credentials_not_their_secret() -> None:
    assert token_id(AUTH) == token_id(GoogleAuth("/keys/gateway.json")) != token_id(GoogleAuth(None))
    assert "gateway" not in token_id(AUTH)
