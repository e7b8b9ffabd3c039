"""What every browser test shares: one headless Chromium per module (Debian's `chromium`, driven by Playwright; never
`playwright install`), the admin token the tests' gateways take, and pages signed in to a gateway's console. Every
page a test opens fails that test if the browser reports an error on it (a script or style the page's security
policy refused, a script that threw)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.conftest import Stack
from tests.e2e.conftest import oauth, upstreams  # noqa: F401  (the fake OAuth server and login upstreams)
from tests.e2e.test_console import ADMIN

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
