"""What every browser test shares: one headless Chromium per module (Debian's `chromium`, driven by Playwright; never
`playwright install`), the admin token the tests' gateways take, and pages signed in to a gateway's console. Every
page a test opens fails that test if the browser reports an error on it (a script or style the page's security
policy refused, a script that threw)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.conftest import Stack
from tests.e2e.conftest import oauth, upstreams  # noqa: F401  (the fake OAuth server and login upstreams)
from tests.e2e.test_console import ADMIN
from tests.e2e.test_logins import CHAT
from tests.fakes import FakeProvider
from tests.waits import eventually

CHROMIUM = "/usr/bin/chromium"  # Debian's package (apt-get install chromium; .ci/run does)
WIDTHS = (1280, 375)  # a desktop and a phone
REFUSED_SIGN_IN = "the server responded with a status of 401"  # the wrong token's page itself: expected


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: a module's processes (Chromium among them) must not outlive it."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def admin_token() -> str:
    """The `auth.admin_token` of the tests' gateways, which signs in to their console."""
    return ADMIN


def sign_in(page: Page, base: str, token: str = ADMIN) -> None:
    """Through the sign-in form, as a person would: the console sends a new visitor there first."""
    page.goto(base + "/console/")
    assert page.url.endswith("/console/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def fits(page: Page, width: int) -> None:
    """Nothing but a table's own scroll box is wider than the screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


class Pages:
    """The pages one test opens, each in a context of its own (its cookies, its width); what the browser reports
    as an error on any of them is kept, and fails the test when it ends."""

    def __init__(self, browser: Browser) -> None:
        self._browser = browser
        self._contexts: list[BrowserContext] = []
        self.problems: list[str] = []

    def open(self, width: int = 1280, height: int = 900) -> Page:
        context = self._browser.new_context(viewport={"width": width, "height": height})
        self._contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        return page

    def signed_in(self, base: str, width: int = 1280, token: str = ADMIN) -> Page:
        """A page on the console's Overview, signed in with the admin token."""
        page = self.open(width)
        sign_in(page, base, token)
        page.wait_for_url("**/console/")
        return page

    def close(self) -> None:
        for context in self._contexts:
            context.close()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and REFUSED_SIGN_IN not in message.text:
            self.problems.append(f"{message.text} ({message.location.get('url')})")


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()
    assert opened.problems == [], "the browser reported errors (a refused script or style, say)"


@pytest.fixture
def page(pages: Pages) -> Page:
    """A page not signed in."""
    return pages.open()


@pytest.fixture
def signed_in(pages: Pages, stack: Stack) -> Page:
    """A page signed in to the console of the module's (or test's) `stack`, on its Overview."""
    return pages.signed_in(stack.url)


def json_of(page: Page, path: str) -> Any:
    """A console endpoint's JSON, fetched with the page's session (its cookie)."""
    answer = page.request.get(page.url.split("/console/")[0] + path)
    assert answer.ok, f"{path}: {answer.status}"
    return answer.json()


# ------------------------------------------------------------------ a subscription login, made in the browser

def log_in_to_claude(page: Page) -> None:
    """From the console's Accounts page, the Claude Pro/Max login as a person makes it: open the provider's page
    (the fake OAuth server's), copy the code it shows, paste it, finish."""
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
    assert page.get_by_role("status").first.inner_text().startswith("Logged in: claude")


def windows_reported(fakes: dict[str, FakeProvider], url: str, headers: dict[str, str] | None = None) -> None:
    """A request served by the Claude login whose answer reports its 5h window (42% used, resets in an hour) and
    its 7d window (12%)."""
    resets = int(time.time()) + 3600
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-5-5",
                         "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    fakes["anthropic"].script(200, {"anthropic-ratelimit-unified-status": "allowed",
                                    "anthropic-ratelimit-unified-5h-utilization": "0.42",
                                    "anthropic-ratelimit-unified-5h-reset": str(resets),
                                    "anthropic-ratelimit-unified-7d-utilization": "0.12",
                                    "anthropic-ratelimit-unified-7d-reset": str(resets + 86400)}, answer)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(url + "/v1/messages", json=body, headers=headers or {}).status_code == 200


def windows_shown(page: Page, url: str) -> None:
    """Until the Accounts page shows the windows `windows_reported` sent (they reach it after the answer)."""
    def shown() -> bool:
        page.goto(url + "/console/accounts")  # not a reload: after a login, that would send its form again
        return page.get_by_text("5h: 42% used").count() == 1
    eventually(shown, "the Accounts page shows the login's 5h window")
