"""The console's Accounts page in a real browser (Debian's Chromium, headless, driven by Playwright) through
Envoy: sign in with the admin token, log in to Claude by the code the fake OAuth server's page shows, and see the
login with its windows once a request reported them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import log_in_to_claude, windows_reported, windows_shown
from tests.conftest import Stack
from tests.e2e.test_logins import login_config, no_token_in
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider


@pytest.fixture
def stack(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
          make_stack: Callable[[dict[str, Any]], Stack], admin_token: str) -> Stack:
    """A gateway whose logins all go to the fake OAuth server, its console behind the admin token."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    config["auth"]["admin_token"] = admin_token
    return make_stack(config)


def test_a_claude_login_made_in_the_browser_appears_with_its_windows(
        signed_in: Page, stack: Stack, fakes: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    page = signed_in
    log_in_to_claude(page)
    windows_reported(fakes, stack.url)
    windows_shown(page, stack.url)
    assert page.get_by_text("7d: 12% used").count() == 1
    assert page.locator("meter").first.get_attribute("value") == "0.42"
    assert page.locator("td.status").first.inner_text().startswith("active")
    no_token_in(page.content(), oauth)
