"""A Claude login's refresh asks for the scopes it was granted, as Claude Code does: a login made under today's
scopes keeps them, one made under the old ones (before user:sessions:claude_code and the rest) keeps refreshing
with its own, and one the provider no longer grants them to is suspended with a message that says to log in
again. The account manager against the real fake OAuth server (which refuses a scope beyond the grant, RFC 6749
§6) over loopback, with a real token store on disk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extproc.auth.accounts import AccountManager, login_credential
from extproc.auth.store import Account, TokenStore
from extproc.config import parse_settings
from extproc.core.errors import CredentialUnavailable
from tests.fake_oauth import FakeOAuth

OLD_SCOPES = "org:create_api_key user:profile user:inference"


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    yield server
    server.close()


def refreshed(oauth: FakeOAuth, tmp_path: Path, granted: str, kept: str | None) -> tuple[Account, str]:
    """Refresh a Claude login granted `granted` whose account knows `kept` of it; the account after, and the
    scope the refresh asked for."""
    flows = parse_settings({"oauth": {"claude": {"token_url": f"{oauth.base_url}/v1/oauth/token"}}}, {}).flows
    issued = oauth.issue_tokens(flows["claude"].client_id, scope=granted)
    store = TokenStore(tmp_path / "accounts.json")
    store.upsert(Account(id="claude-1", kind="claude", access_token=issued["access_token"],
                         refresh_token=issued["refresh_token"], expires_at=0.0, scopes=kept))

    async def refresh() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(store, flows, http)
            await manager.load()
            credential = login_credential(manager.accounts()[0], flows["claude"])
            with contextlib.suppress(CredentialUnavailable):  # a refused refresh: the account says why
                await manager.secret(credential)

    asyncio.run(refresh())
    asked = oauth.token_requests[-1].params.get("scope", "")
    account = store.get("claude-1")
    assert account is not None
    return account, asked


def test_a_login_made_today_refreshes_with_the_scopes_it_was_granted(oauth: FakeOAuth, tmp_path: Path) -> None:
    scopes = " ".join(parse_settings({}, {}).flows["claude"].scopes)
    account, asked = refreshed(oauth, tmp_path, scopes, scopes)
    assert asked == scopes and account.status == "active" and account.scopes == scopes


def test_a_login_made_under_the_old_scopes_keeps_refreshing_with_its_own(oauth: FakeOAuth,
                                                                               tmp_path: Path) -> None:
    account, asked = refreshed(oauth, tmp_path, OLD_SCOPES, None)  # from before scopes were kept
    assert asked == "" and account.status == "active"  # no scope asked: the grant's own (RFC 6749 §6)
    assert account.scopes == OLD_SCOPES  # the answer said which: the next refresh asks for them
    again, asked_again = refreshed(oauth, tmp_path, OLD_SCOPES, OLD_SCOPES)
    assert asked_again == OLD_SCOPES and again.status == "active"


def test_a_scope_the_provider_dropped_is_asked_for_no_more(oauth: FakeOAuth, tmp_path: Path) -> None:
    account, asked = refreshed(oauth, tmp_path, OLD_SCOPES, OLD_SCOPES + " user:sessions:claude_code")
    first, second = (r.params.get("scope", "") for r in oauth.token_requests[-2:])
    assert first.endswith("user:sessions:claude_code") and second == asked == ""  # refused, then the grant's own
    assert account.status == "active" and account.scopes == OLD_SCOPES


def test_a_login_whose_scopes_are_withdrawn_is_suspended_and_told_to_log_in_again(oauth: FakeOAuth,
                                                                                   tmp_path: Path) -> None:
    oauth.withdrawn_scopes = {"org:create_api_key"}
    account, _ = refreshed(oauth, tmp_path, OLD_SCOPES, OLD_SCOPES)
    assert account.status == "suspended"
    reason = account.status_reason or ""
    assert "invalid_scope" in reason and "no longer grants" in reason and "log in again" in reason
