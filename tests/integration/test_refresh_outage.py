"""A login's refresh while its token endpoint is down: the account manager against the real fake OAuth server over
loopback (behind a front that can go down), a real token store on disk, and a hand-set clock.

While the token is due but valid it keeps serving and the refresh is retried in the background at a measured
pace (not once per request); once it has expired the login is unavailable for now (not suspended for good);
when the endpoint is back, the next call refreshes it and the new pair is persisted.

Nothing here waits on the wall clock: the manager's clock is set by hand, and each step waits for what it can
observe (the front's 503s, the gateway's own count of failed refreshes, the loop with no refresh left running).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from extproc.auth.accounts import AHEAD_RETRY, AccountManager, login_credential
from extproc.auth.store import Account, TokenStore
from extproc.config import parse_settings
from extproc.core.errors import CredentialUnavailable
from tests.clock import Clock
from tests.fake_oauth import FakeOAuth
from tests.faults import Outage

SKEW = 300.0


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    yield server
    server.close()


@pytest.fixture
def front(oauth: FakeOAuth) -> Iterator[Outage]:
    outage = Outage(oauth.port)
    yield outage
    outage.close()


def namer(oauth: FakeOAuth, issued: str) -> Callable[[str], str]:
    """What a token is, by name: assertions compare names, so a failure never shows a token."""
    return lambda token: "issued" if token == issued else "latest" if token == oauth.latest_access_token else "other"


async def until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the background refresh run (it is a real call over loopback) until `check` holds; the timeout only
    ends a wait that would hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def failed_refreshes() -> float:
    """Refreshes the gateway tried and saw fail, as its metrics count them (whatever the outage looks like)."""
    return REGISTRY.get_sample_value("extproc_token_refreshes_total", {"result": "failed"}) or 0.0


def idle() -> bool:
    """Nothing but the test itself runs on the loop: every refresh started so far has ended."""
    return asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("outage", ["503", "refused"])
def test_a_due_token_serves_through_an_outage_and_is_refreshed_when_the_endpoint_returns(
        outage: str, tmp_path: Path, oauth: FakeOAuth, front: Outage, clock: Clock) -> None:
    flows = parse_settings({"oauth": {"claude": {"token_url": f"{front.base_url}/v1/oauth/token"}}}, {}).flows
    issued = oauth.issue_tokens(flows["claude"].client_id)
    store = TokenStore(tmp_path / "accounts.json")
    expires_at = clock.now + 100  # inside the skew: due for a refresh, valid for 100 s more
    store.upsert(Account(id="claude-1", kind="claude", access_token=issued["access_token"],
                         refresh_token=issued["refresh_token"], expires_at=expires_at))
    front.set(outage)

    which = namer(oauth, issued["access_token"])

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, flows, http, skew=SKEW, clock=clock)
            await manager.load()
            cred = login_credential(store.get("claude-1") or Account(id="", kind=""), flows["claude"])
            failed = failed_refreshes()
            for _ in range(20):  # every request goes with the current token, none waits on the endpoint
                assert which(await manager.secret(cred)) == "issued"
            await until("a refresh failed", lambda: failed_refreshes() >= failed + 1)
            await until("no refresh is running", idle)  # every refresh the 20 requests started has ended
            assert failed_refreshes() == failed + 1, "a refresh per request while the endpoint is down"
            if outage == "503":
                await until("the front answered", lambda: front.answered_503 == 1)
            assert not manager.suspended()

            clock.now += AHEAD_RETRY + 1  # still valid: tried again, once
            assert which(await manager.secret(cred)) == "issued"
            await until("a second refresh failed", lambda: failed_refreshes() >= failed + 2)
            await until("no refresh is running", idle)
            assert failed_refreshes() == failed + 2, "tried again more than once"

            clock.now = expires_at + 1  # expired, the endpoint still down: unavailable for now, not for good
            with pytest.raises(CredentialUnavailable) as caught:
                await manager.secret(cred)
            assert not caught.value.permanent and not manager.suspended()
            tokenless = issued["refresh_token"] not in caught.value.reason
            assert "claude" in caught.value.reason and tokenless

            calls = oauth.refresh_calls
            front.set("up")
            assert which(await manager.secret(cred)) == "latest"
            assert oauth.refresh_calls == calls + 1
            assert which(await manager.secret(cred)) == "latest" and oauth.refresh_calls == calls + 1

    asyncio.run(run())
    stored = store.get("claude-1")
    assert stored is not None and stored.status == "active"
    assert which(stored.access_token or "") == "latest", "the refreshed pair was not persisted"
    rotated = stored.refresh_token != issued["refresh_token"]
    assert rotated, "the spent refresh token was kept"


def test_a_due_token_is_refreshed_in_the_background_while_it_serves(
        tmp_path: Path, oauth: FakeOAuth, front: Outage, clock: Clock) -> None:
    """The endpoint is up and slow: the request in the skew window gets the current token at once, and the
    ones after the refresh landed get the new one; one refresh for all of them."""
    flows = parse_settings({"oauth": {"claude": {"token_url": f"{front.base_url}/v1/oauth/token"}}}, {}).flows
    issued = oauth.issue_tokens(flows["claude"].client_id)
    store = TokenStore(tmp_path / "accounts.json")
    store.upsert(Account(id="claude-1", kind="claude", access_token=issued["access_token"],
                         refresh_token=issued["refresh_token"], expires_at=clock.now + 100))
    oauth.refresh_delay = 0.3
    which = namer(oauth, issued["access_token"])

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, flows, http, skew=SKEW, clock=clock)
            await manager.load()
            cred = login_credential(store.get("claude-1") or Account(id="", kind=""), flows["claude"])
            served = await asyncio.gather(*(manager.secret(cred) for _ in range(10)))
            assert [which(token) for token in served] == ["issued"] * 10
            await until("the refresh landed", lambda: oauth.latest_access_token != issued["access_token"])
            await until("the new token serves", lambda: which(manager.accounts()[0].access_token or "") == "latest")
            assert which(await manager.secret(cred)) == "latest"
            assert oauth.refresh_calls == 1

    asyncio.run(run())
