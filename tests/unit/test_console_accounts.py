"""The Accounts page's pure parts: a login in progress sealed for the browser, and an account as the page shows it."""

from __future__ import annotations

import pytest

from extproc.auth.pkce import LoginExpired, LoginSealer, new_login
from extproc.auth.store import Account
from extproc.console.accounts import account_view
from extproc.core.windows import WindowLevel, WindowState


def test_a_sealed_login_opens_with_the_same_secret_only_and_not_after_it_expired() -> None:
    now = [1000.0]
    login = new_login("claude", "https://hosted.example/cb", now[0])
    handle = LoginSealer("s" * 20, clock=lambda: now[0]).seal(login)
    assert login.verifier not in handle and login.state not in handle
    assert LoginSealer("s" * 20, clock=lambda: now[0]).open(handle) == login  # another worker opens it
    with pytest.raises(LoginExpired, match="not one this gateway started"):
        LoginSealer("t" * 20, clock=lambda: now[0]).open(handle)
    with pytest.raises(LoginExpired, match="not one this gateway started"):
        LoginSealer("s" * 20, clock=lambda: now[0]).open(handle[:-4] + "AAAA")
    now[0] += 601
    with pytest.raises(LoginExpired, match="older than ten minutes"):
        LoginSealer("s" * 20, clock=lambda: now[0]).open(handle)


def test_an_account_shows_its_windows_and_reason_but_no_secret() -> None:
    windows = WindowState(1.2, 5000.0, True, (WindowLevel("5h", 1.2, 5000.0), WindowLevel("7d", 0.3, 100.0)))
    account = Account(id="claude-a", kind="claude", access_token="at-secret", refresh_token="rt-secret",
                      api_key="key-secret", status="suspended", status_reason="refresh refused", windows=windows,
                      windows_at=900.0, expires_at=2000.0)
    view = account_view(account, {}, now=1000.0)
    assert [(w.name, w.used, w.percent, w.resets is not None) for w in view.windows] == [
        ("5h", 1.0, "120%", True), ("7d", 0.3, "30%", False)]  # the bar is capped, the text is not; a past reset
    assert view.exhausted and view.reason == "refresh refused" and view.title == "claude"
    assert view.windows_at == "1970-01-01 00:15 UTC"  # when they were read: always past, so not said to be
    assert not any(s in repr(view) for s in ("at-secret", "rt-secret", "key-secret"))
