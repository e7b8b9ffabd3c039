"""The console's Accounts page in a real browser (Debian's Chromium, headless, driven by Playwright) through
Envoy: sign in with the admin token, log in to Claude by the code the fake OAuth server's page shows, and see the
login with its windows once a request reported them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.conftest import Stack
from tests.e2e.test_logins import CHAT, login_config, no_token_in
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually


@pytest.fixture
def stack(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
          make_stack: Callable[[dict[str, Any]], Stack], admin_token: str) -> Stack:
    """A gateway whose logins all go to the fake OAuth server, its console behind the admin token."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    config["auth"]["admin_token"] = admin_token
    return make_stack(config)


def windows_reported(fakes: dict[str, FakeProvider], url: str, resets: int) -> None:
    """A request served by the login whose answer reports its 5h and 7d windows."""
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-5-5",
                         "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    fakes["anthropic"].script(200, {"anthropic-ratelimit-unified-status": "allowed",
                                    "anthropic-ratelimit-unified-5h-utilization": "0.42",
                                    "anthropic-ratelimit-unified-5h-reset": str(resets),
                                    "anthropic-ratelimit-unified-7d-utilization": "0.12",
                                    "anthropic-ratelimit-unified-7d-reset": str(resets + 86400)}, answer)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(url + "/v1/messages", json=body).status_code == 200


def test_a_claude_login_made_in_the_browser_appears_with_its_windows(
        signed_in: Page, stack: Stack, fakes: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    page = signed_in
    page.get_by_role("link", name="Accounts").click()
    assert page.get_by_role("heading", name="Accounts").is_visible()

    page.get_by_role("button", name="Log in to Claude Pro/Max", exact=True).click()
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open the Claude Pro/Max sign-in page").click()
    provider = opened.value
    provider.wait_for_load_state()
    code = provider.locator("pre").inner_text().strip()  # the provider's page shows code#state to copy
    provider.close()
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Finish the login").click()
    notice = page.get_by_role("status").first
    assert notice.inner_text().startswith("Logged in: claude")

    windows_reported(fakes, stack.url, int(time.time()) + 3600)

    def shown() -> bool:
        page.goto(stack.url + "/console/accounts")  # not a reload: that would send the finished login's form again
        return page.get_by_text("5h: 42% used").count() == 1

    eventually(shown, "the Accounts page shows the login's 5h window")
    assert page.get_by_text("7d: 12% used").count() == 1
    assert page.locator("meter").first.get_attribute("value") == "0.42"
    assert page.locator("td.status").first.inner_text().startswith("active")
    no_token_in(page.content(), oauth)
