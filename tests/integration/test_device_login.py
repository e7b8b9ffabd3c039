"""Device-code logins against the fake OAuth server over real HTTP: the terminal's poll loop with its sleeps
taken on a hand-set clock the fake shares, so a 15-minute code is waited out without waiting."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from extproc.auth.accounts import AccountManager, LoginError
from extproc.auth.store import Account, TokenStore
from extproc.auth.terminal import device_login
from extproc.config import parse_settings
from extproc.core.flows import Device, Flow
from tests.clock import Clock
from tests.fake_oauth import FakeOAuth


@pytest.fixture
def oauth(clock: Clock) -> Iterator[FakeOAuth]:
    fake = FakeOAuth(clock=clock, device_interval=5, device_expires_in=900)
    yield fake
    fake.close()


def flows(oauth: FakeOAuth) -> dict[str, Flow]:
    """codex with OpenAI's device login on the fake; `github` is codex's flow with an RFC 8628 device login."""
    base = oauth.base_url
    found = dict(parse_settings({"oauth": {"codex": {"token_url": f"{base}/oauth/token", "device": {
        "style": "openai", "code_url": f"{base}/api/accounts/deviceauth/usercode",
        "poll_url": f"{base}/api/accounts/deviceauth/token", "verify_url": oauth.device_page,
        "redirect_uri": oauth.device_redirect_uri}}}}, {}, secrets=False).flows)
    found["github"] = dataclasses.replace(found["codex"], name="github", authorize_url=None, token_format="form",
                                          token_url=f"{base}/login/oauth/access_token",
                                          device=Device("rfc8628", f"{base}/login/device/code",
                                                        f"{base}/login/oauth/access_token"))
    return found


class User:
    """The user at the other device, and the terminal's sleeps: each sleep moves the clock instead of waiting,
    and the user acts (approve or deny) once the terminal has polled `after` times."""


    def __init__(self, oauth: FakeOAuth, clock: Clock, act: Callable[[str], None] | None, after: int,
                 server_interval: float | None = None) -> None:
        self.oauth, self.clock, self.act, self.after = oauth, clock, act, after
        self.server_interval = server_interval  # what the server enforces, when not what it announced
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        (login,) = self.oauth.device_logins()
        if self.server_interval is not None and not self.waits:
            login.interval = self.server_interval
        self.waits.append(seconds)
        self.clock.now += seconds
        if self.act is not None and login.polls == self.after and login.state == "pending":
            self.act(login.user_code)


def log_in(tmp_path: Path, oauth: FakeOAuth, clock: Clock, flow: str, user: User) -> tuple[Account | None, str]:
    """`device_login` as the terminal runs it: the account, or the error it ended with."""
    async def run() -> tuple[Account | None, str]:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(TokenStore(tmp_path / "accounts.json"), flows(oauth), http, clock=clock)
            try:
                return await device_login(manager, flow, clock=clock, sleep=user.sleep), ""
            except LoginError as exc:
                return None, str(exc)
    return asyncio.run(run())


def test_an_rfc8628_login_polls_at_the_interval_until_approved_and_keeps_the_account(
        tmp_path: Path, oauth: FakeOAuth, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    user = User(oauth, clock, oauth.approve_device, after=3)
    account, error = log_in(tmp_path, oauth, clock, "github", user)
    assert account is not None, error
    (login,) = oauth.device_logins()
    assert login.answers == ["authorization_pending"] * 3 + ["tokens"] and user.waits == [5, 5, 5, 5]
    stored = TokenStore(tmp_path / "accounts.json").get(account.id)
    assert stored is not None and stored.kind == "github" and oauth.is_valid_access_token(stored.access_token or "")
    shown = capsys.readouterr()
    assert oauth.device_page in shown.out and f"enter the code: {login.user_code}" in shown.out
    assert not [secret for secret in oauth.issued_secrets() if secret in shown.out + shown.err]


def test_a_poll_too_soon_is_told_to_slow_down_and_every_later_poll_waits_longer(
        tmp_path: Path, oauth: FakeOAuth, clock: Clock) -> None:
    user = User(oauth, clock, oauth.approve_device, after=2, server_interval=7)  # it announced 5, wants 7
    account, error = log_in(tmp_path, oauth, clock, "github", user)
    assert account is not None, error
    (login,) = oauth.device_logins()
    assert login.answers == ["slow_down", "authorization_pending", "tokens"]
    assert user.waits == [5, 12, 12]  # its 7 + RFC 8628's 5 s, which it names in the answer, kept from then on


def test_a_denied_login_ends_with_a_message_and_keeps_nothing(tmp_path: Path, oauth: FakeOAuth, clock: Clock) -> None:
    account, error = log_in(tmp_path, oauth, clock, "github", User(oauth, clock, oauth.deny_device, after=1))
    assert account is None and "denied" in error and "start it again" in error
    assert TokenStore(tmp_path / "accounts.json").load() == []


def test_an_unapproved_login_ends_when_its_code_expires(tmp_path: Path, oauth: FakeOAuth, clock: Clock) -> None:
    user = User(oauth, clock, None, after=0)
    account, error = log_in(tmp_path, oauth, clock, "github", user)
    assert account is None and "expired" in error
    assert sum(user.waits) == pytest.approx(900)  # waited out the code's whole life, and not a second more
    (login,) = oauth.device_logins()
    assert set(login.answers) <= {"authorization_pending", "expired_token"} and len(login.answers) <= 181


def test_an_openai_login_polls_then_exchanges_the_code_with_its_verifier(
        tmp_path: Path, oauth: FakeOAuth, clock: Clock) -> None:
    account, error = log_in(tmp_path, oauth, clock, "codex", User(oauth, clock, oauth.approve_device, after=2))
    assert account is not None, error
    (login,) = oauth.device_logins()
    assert login.answers == ["pending", "pending", "tokens"]
    (exchange,) = [r for r in oauth.token_requests if r.grant_type == "authorization_code"]
    assert exchange.path == "/oauth/token" and exchange.content_type.startswith("application/x-www-form-urlencoded")
    assert exchange.params["redirect_uri"] == oauth.device_redirect_uri  # the fake checked the PKCE verifier too
    assert account.account_id == oauth.chatgpt_account_id and account.email == oauth.email
