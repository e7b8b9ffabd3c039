"""A Copilot login's GitHub side over real HTTP, with no gateway around it: the token exchange refused for good
or only for now, the quota reader leaving a login someone read lately, model discovery going on to the next
login when one is suspended, and a device login knowing who logged in (GitHub's /user)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from extproc.auth.accounts import AccountManager
from extproc.auth.client import Grant, new_account
from extproc.auth.quota import QUOTA_EVERY, QuotaReader
from extproc.auth.store import Account, TokenStore
from extproc.config import parse_settings
from extproc.core.errors import CredentialUnavailable
from extproc.core.settings import Settings
from extproc.core.windows import WindowLevel, WindowState
from extproc.discovery.refresh import Discovery
from extproc.runtime import Runtime
from tests.fake_copilot import CLAUDE, FakeCopilot
from tests.fake_oauth import FakeOAuth

pytestmark = pytest.mark.usefixtures("fresh_copilot")  # each test starts with an empty fake Copilot


def config(copilot: FakeCopilot, userinfo: str | None = None) -> Settings:
    oauth: dict[str, Any] = {"exchange_url": f"{copilot.base_url}/copilot_internal/v2/token",
                             "quota_url": f"{copilot.base_url}/copilot_internal/user"}
    if userinfo is not None:
        oauth["userinfo_url"] = userinfo
    return parse_settings({"providers": {"copilot": {"base_url": copilot.base_url}}, "oauth": {"copilot": oauth}},
                          {}, secrets=False)


def seed(store: TokenStore, name: str, **fields: Any) -> Account:
    now = time.time()
    return store.upsert(Account(id=f"copilot-{name}", kind="copilot", created_at=now, updated_at=now, **fields))


def quota_reads(copilot: FakeCopilot) -> list[str]:
    """The GitHub tokens the plan's quota was read with, in order."""
    return [r.headers["authorization"].removeprefix("token ") for r in copilot.github_requests
            if r.path == "/copilot_internal/user"]


@pytest.mark.parametrize(("status", "headers", "suspended"), [
    (401, {}, True),  # the GitHub token is no good
    (403, {}, True),  # the account has no Copilot
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1900000000"}, False),  # GitHub's rate limit
    (403, {"retry-after": "60"}, False),  # its secondary rate limit
    (429, {"retry-after": "60"}, False),
    (502, {}, False),
])
def test_an_exchange_refused_for_good_suspends_the_login_and_a_rate_limit_does_not(
        tmp_path: Path, copilot: FakeCopilot, status: int, headers: dict[str, str], suspended: bool) -> None:
    store = TokenStore(tmp_path / "accounts.json")
    editor = copilot.github_token(editor=True)
    seed(store, "editor", refresh_token=editor)  # exchanged before its first use
    copilot.github_refusal = (status, headers)
    settings = config(copilot)

    async def use() -> CredentialUnavailable:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, settings.flows, http)
            await manager.load()
            with pytest.raises(CredentialUnavailable) as refused:
                await manager.secret(manager.credentials()[0])
            return refused.value

    refused = asyncio.run(use())
    (stored,) = store.load()
    assert (stored.status == "suspended", refused.permanent) == (suspended, suspended), refused.reason
    assert f"HTTP {status}" in refused.reason and editor not in refused.reason


def test_the_quota_reader_leaves_a_login_whose_stored_windows_are_recent(tmp_path: Path, copilot: FakeCopilot) -> None:
    """Another replica (sharing the store) read it lately: this one waits until that reading is QUOTA_EVERY old."""
    store = TokenStore(tmp_path / "accounts.json")
    now = time.time()
    state = WindowState(0.5, None, False, (WindowLevel("premium_interactions", 0.5, None),))
    fresh, stale, never = copilot.github_token(), copilot.github_token(), copilot.github_token()
    seed(store, "fresh", access_token=fresh, windows=state, windows_at=now - QUOTA_EVERY / 2)
    seed(store, "stale", access_token=stale, windows=state, windows_at=now - QUOTA_EVERY - 1)
    seed(store, "never", access_token=never)
    settings = config(copilot)

    async def read() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, settings.flows, http)
            await manager.load()
            await QuotaReader(Runtime(settings), manager, http).read_due()

    asyncio.run(read())
    assert sorted(quota_reads(copilot)) == sorted([stale, never])


def test_discovery_asks_with_the_next_login_when_the_first_is_suspended(tmp_path: Path,
                                                                        copilot: FakeCopilot) -> None:
    store = TokenStore(tmp_path / "accounts.json")
    usable = copilot.github_token()
    seed(store, "a-suspended", access_token=copilot.github_token(), status="suspended",
         status_reason="refused: log in again")
    seed(store, "b-usable", access_token=usable)
    settings = config(copilot)
    lists: list[set[str]] = []

    async def discover() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, settings.flows, http)
            await manager.load()
            logins = manager.credentials()
            assert [c.account for c in logins] == ["copilot-a-suspended", "copilot-b-usable"]  # the first can't
            discovery = Discovery(settings, http, lambda found: lists.append({m.id for m in found["copilot"]}),
                                  secrets=manager, logins=lambda: logins)
            await discovery.refresh_due()

    asyncio.run(discover())
    assert lists and CLAUDE in lists[-1]
    assert [r.headers["authorization"] for r in copilot.list_requests[-1:]] == [f"Bearer {usable}"]


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    yield server
    server.close()


def test_a_device_login_is_named_by_githubs_user_so_a_second_login_replaces_the_first(
        copilot: FakeCopilot, oauth: FakeOAuth) -> None:
    """A device login's grant does not say who logged in: GitHub's /user does (`login`, or the email when the user
    made it public); the same user twice is the same account."""
    flow = config(copilot, userinfo=f"{oauth.base_url}/user").flows["copilot"]

    async def log_in() -> Account:
        token = oauth.issue_tokens(flow.client_id)["access_token"]
        async with httpx.AsyncClient() as http:
            return await new_account(http, flow, Grant(access_token=token, refresh_token=None, expires_at=None))

    first, again = asyncio.run(log_in()), asyncio.run(log_in())
    assert first.email == again.email == "octocat" and first.id == again.id
    oauth.github_email = "octo@example.com"
    public = asyncio.run(log_in())
    assert public.email == "octo@example.com"
    assert [c.authorized for c in oauth.calls if c.path == "/user"] == [True, True, True]  # each with its token
