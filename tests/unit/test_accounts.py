"""The account manager without sockets: a real token store on disk, a token endpoint behind httpx's MockTransport.

The endpoint behaves like the real ones: each refresh token works once and rotates (a spent one is
`invalid_grant`), so single flight, refusal handling and adoption of another process's rotation are
all observable in what it was asked and what the store holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from extproc.auth.accounts import ROUTE_MARGIN, AccountManager, TokenState, login_credential, next_state
from extproc.auth.store import Account, TokenStore, store_at
from extproc.config import parse_settings
from extproc.core.errors import CredentialUnavailable
from extproc.core.settings import Credential
from tests.clock import Clock

TOKEN_URL = "https://oauth.test/v1/oauth/token"
FLOWS = parse_settings({"oauth": {"claude": {"token_url": TOKEN_URL}}}, {}).flows


class TokenEndpoint:
    """Rotating, single-use refresh tokens: r1 → (a2, r2) → (a3, r3) …"""

    def __init__(self) -> None:
        self.calls: list[str] = []  # the refresh tokens it was sent
        self.spent: set[str] = set()
        self.before_answer: Callable[[], Awaitable[None]] | None = None  # runs inside the first call
        self.down = 0  # calls still to answer 503 (the endpoint is down; the refresh token is not spent)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["refresh_token"]
        self.calls.append(sent)
        hook, self.before_answer = self.before_answer, None
        if hook is not None:
            await hook()
        if self.down:
            self.down -= 1
            return httpx.Response(503, json={"error": "temporarily_unavailable"})
        if sent in self.spent:
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.spent.add(sent)
        n = int(sent[1:]) + 1
        return httpx.Response(200, json={"access_token": f"a{n}", "refresh_token": f"r{n}", "expires_in": 3600})


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    store = store_at(str(tmp_path / "accounts.json"))
    store.upsert(Account(id="claude-1", kind="claude", access_token="a1", refresh_token="r1",
                         expires_at=time.time() + 3600))
    return store


def manager(store: TokenStore, endpoint: TokenEndpoint) -> AccountManager:
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return AccountManager(store, FLOWS, http)


def credential(store: TokenStore) -> Credential:
    account = store.get("claude-1")
    assert account is not None
    return login_credential(account, FLOWS["claude"])


def _expired(account: Account) -> Account:
    return dataclasses.replace(account, expires_at=time.time() - 1)


def test_concurrent_requests_on_an_expiring_token_share_one_refresh(store, endpoint):
    store.update("claude-1", _expired)

    async def run() -> list[str]:
        m = manager(store, endpoint)
        await m.load()
        cred = credential(store)
        return await asyncio.gather(*(m.secret(cred) for _ in range(20)))

    tokens = asyncio.run(run())
    assert tokens == ["a2"] * 20
    assert endpoint.calls == ["r1"]
    stored = store.get("claude-1")
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("a2", "r2")  # persisted


def test_a_refused_token_is_refreshed_once_and_refused_again_it_is_not_refreshed_again(store, endpoint):
    async def run() -> None:
        m = manager(store, endpoint)
        await m.load()
        cred = credential(store)
        assert await m.secret(cred) == "a1" and endpoint.calls == []  # valid: no call
        assert m.invalidate(cred) is True and m.token_state("claude-1") is TokenState.REFUSED
        assert await m.secret(cred) == "a2" and endpoint.calls == ["r1"]
        assert m.token_state("claude-1") is TokenState.RETRIED
        assert m.invalidate(cred) is False  # the fresh token refused too: the caller suspends, no loop
        assert await m.secret(cred) == "a2" and endpoint.calls == ["r1"]
        m.confirm(cred)  # an upstream took it: a later refusal deserves a refresh again
        assert m.token_state("claude-1") is TokenState.TRUSTED
        assert m.invalidate(cred) is True
        assert await m.secret(cred) == "a3" and endpoint.calls == ["r1", "r2"]

    asyncio.run(run())


def test_a_token_another_process_already_refreshed_is_adopted_without_a_call(store, endpoint):
    async def run() -> None:
        first, second = manager(store, endpoint), manager(store, endpoint)
        await first.load()
        await second.load()  # both hold a1/r1 in memory
        cred = credential(store)
        first.invalidate(cred)
        assert await first.secret(cred) == "a2"
        second.invalidate(cred)  # its upstream refused a1 too
        assert await second.secret(cred) == "a2"  # the store already has a2: no second refresh
        assert endpoint.calls == ["r1"]
        assert second.token_state("claude-1") is TokenState.TRUSTED

    asyncio.run(run())


def test_losing_a_refresh_race_to_another_process_adopts_its_rotation(store, endpoint):
    """Both send r1 (the other one takes no lock: another tool on the same store); its call lands first, ours
    gets invalid_grant: take its tokens, don't suspend."""
    import contextlib

    store.update("claude-1", _expired)

    class Unlocked(TokenStore):
        def refresh_lock(self, account_id: str) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    async def run() -> str:
        ours, theirs = manager(store, endpoint), manager(Unlocked(store.path), endpoint)
        await ours.load()
        await theirs.load()
        cred = credential(store)

        async def other_process_refreshes_first() -> None:
            assert await theirs.secret(cred) == "a2"

        endpoint.before_answer = other_process_refreshes_first
        return await ours.secret(cred)

    assert asyncio.run(run()) == "a2"
    assert endpoint.calls == ["r1", "r1"]
    stored = store.get("claude-1")
    assert stored is not None and stored.status == "active" and stored.refresh_token == "r2"


def test_a_refused_refresh_suspends_the_login_and_tells_the_runtime(store, endpoint):
    store.update("claude-1", _expired)
    endpoint.spent.add("r1")  # someone spent it and the store has nothing newer
    published: list[dict[str, str]] = []

    async def run() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
        m = AccountManager(store, FLOWS, http, on_change=lambda _c, suspended, _w: published.append(dict(suspended)))
        await m.load()
        with pytest.raises(CredentialUnavailable) as caught:
            await m.secret(credential(store))
        assert caught.value.permanent
        with pytest.raises(CredentialUnavailable):
            await m.secret(credential(store))  # suspended: no second call

    asyncio.run(run())
    assert endpoint.calls == ["r1"]
    assert published[0] == {} and "invalid_grant" in published[-1]["claude-1"]
    stored = store.get("claude-1")
    assert stored is not None and stored.status == "suspended"


def test_a_request_after_a_failed_refresh_ended_gets_a_refresh_of_its_own(store, endpoint):
    """The failed refresh has ended, but its done callbacks have not run yet (a request woken in the same turn of
    the loop): that request must not be handed the old failure; it refreshes, and the endpoint is back."""
    clock = Clock(time.time())
    endpoint.down = 1

    async def run() -> str:
        http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
        m = AccountManager(store, FLOWS, http, clock=clock)
        await m.load()
        cred = credential(store)
        clock.now = (store.get("claude-1") or Account(id="", kind="")).expires_at - 1  # due, still valid
        before = asyncio.all_tasks()
        assert await m.secret(cred) == "a1"  # served at once; a refresh starts in the background
        (flight,) = asyncio.all_tasks() - before
        while not flight.done():  # polling with zero sleeps wakes this test in the very turn the refresh ends
            await asyncio.sleep(0)
        clock.now += 2  # expired now: the next request must have a fresh token
        return await m.secret(cred)

    assert asyncio.run(run()) == "a2"
    assert endpoint.calls == ["r1", "r1"]


@pytest.mark.parametrize(("state", "event", "after"), [
    (TokenState.TRUSTED, "refused", TokenState.REFUSED),
    (TokenState.REFUSED, "refreshed", TokenState.RETRIED),
    (TokenState.REFUSED, "adopted", TokenState.TRUSTED),
    (TokenState.REFUSED, "accepted", TokenState.REFUSED),  # an old request's success says nothing of the new token
    (TokenState.RETRIED, "refused", TokenState.RETRIED),
    (TokenState.RETRIED, "accepted", TokenState.TRUSTED),
    (TokenState.RETRIED, "forced", TokenState.REFUSED),
    (TokenState.TRUSTED, "refreshed", TokenState.TRUSTED),  # a refresh ahead of expiry
])
def test_token_state_transitions(state, event, after):
    assert next_state(state, event) is after


def test_a_route_carries_a_trusted_token_only_and_never_one_near_its_expiry(store, endpoint):
    clock = Clock(time.time())

    async def run() -> None:
        m = AccountManager(store, FLOWS, httpx.AsyncClient(transport=httpx.MockTransport(endpoint)), clock=clock)
        moved: list[int] = []
        m.watch_tokens(lambda: moved.append(1))
        await m.load()
        cred = credential(store)
        assert m.route_token(cred) == "a1" and moved
        m.invalidate(cred)
        assert m.route_token(cred) is None  # refused: the full path refreshes it before its next use
        assert await m.secret(cred) == "a2" and m.route_token(cred) is None  # fresh from a refusal: not yet taken
        m.confirm(cred)
        assert m.route_token(cred) == "a2"
        clock.now += 3600 - ROUTE_MARGIN + 1
        assert m.route_token(cred) is None  # withdrawn before it expires, refreshed or not

    asyncio.run(run())


def test_tokens_within_the_skew_are_refreshed_with_no_request_asking_and_the_routes_hear_of_it(store, endpoint):
    clock = Clock(time.time())

    async def run() -> None:
        m = AccountManager(store, FLOWS, httpx.AsyncClient(transport=httpx.MockTransport(endpoint)), skew=300,
                           clock=clock)
        await m.load()
        moved: list[int] = []
        m.watch_tokens(lambda: moved.append(1))
        m.refresh_due()
        await asyncio.sleep(0)
        assert endpoint.calls == []  # an hour left: nothing to do
        clock.now += 3600 - 299
        m.refresh_due()
        m.refresh_due()  # one refresh in flight however often the timer looks
        await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not asyncio.current_task()))
        assert endpoint.calls == ["r1"] and m.route_token(credential(store)) == "a2" and moved

    asyncio.run(run())


def test_an_expired_token_is_left_to_the_request_that_needs_it(store, endpoint):
    clock = Clock(time.time() + 3601)

    async def run() -> None:
        m = AccountManager(store, FLOWS, httpx.AsyncClient(transport=httpx.MockTransport(endpoint)), skew=300,
                           clock=clock)
        await m.load()
        m.refresh_due()
        await asyncio.sleep(0)
        assert endpoint.calls == []  # no fast route carries it: the next request refreshes it and waits
        assert m.route_token(credential(store)) is None and await m.secret(credential(store)) == "a2"

    asyncio.run(run())
