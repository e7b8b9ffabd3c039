"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright.

Against a running gateway through Envoy (fake providers): sign in, a wrong admin token refused, each page rendered
with the gateway's figures, at 1280 and 375 px. Against the console alone, in this process, over a usage store in
memory: the Overview's charts drawn by uPlot and the Requests table filtered by htmx, with no script or style the
page's security policy refuses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from extproc.console.app import console_app
from extproc.console.context import Console
from extproc.runtime import Runtime
from extproc.state.rate_limit import LocalRateLimiter
from extproc.state.spend import LocalSpend
from extproc.usage.record import UsageRecord
from extproc.usage.tokens import Usage
from tests.conftest import Stack
from tests.e2e.test_console import ADMIN, TEAM, console_config
from tests.fakes import FakeProvider
from tests.unit.helpers import settings
from tests.usage_memory import MemoryUsage

CHROMIUM = "/usr/bin/chromium"  # Debian's package (apt-get install chromium); never `playwright install`
WIDTHS = (1280, 375)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: _problem(m, problems))
    opened.on("pageerror", lambda e: problems.append(str(e)))
    yield opened
    context.close()
    assert problems == [], "the browser reported errors (a refused script or style, say)"


REFUSED_SIGN_IN = "the server responded with a status of 401"  # the wrong token's page itself: expected


def _problem(message: ConsoleMessage, into: list[str]) -> None:
    if message.type in ("error", "warning") and REFUSED_SIGN_IN not in message.text:
        into.append(message.text)


def sign_in(page: Page, base: str, token: str = ADMIN) -> None:
    page.goto(base + "/console/")
    assert page.url.endswith("/console/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def fits(page: Page, width: int) -> None:
    """Nothing but a table's own scroll box is wider than the screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


# ------------------------------------------------------------------------------------- a running gateway

@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(console_config(fakes))


def test_a_wrong_admin_token_is_refused_in_the_browser(page: Page, stack: Stack) -> None:
    sign_in(page, stack.url, ADMIN + "-wrong")
    assert page.get_by_role("alert").inner_text().startswith("Refused")
    assert page.url.endswith("/console/login")
    page.goto(stack.url + "/console/models")
    assert page.url.endswith("/console/login")  # still no session


@pytest.mark.parametrize("width", WIDTHS)
def test_each_page_renders_with_the_gateways_figures(browser: Browser, stack: Stack, width: int) -> None:
    served = httpx.post(stack.url + "/v1/messages", headers={"x-api-key": TEAM, "anthropic-version": "2023-06-01"},
                        json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": [{"role": "user",
                                                                                        "content": "hi"}]})
    assert served.status_code == 200
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, stack.url)
        page.wait_for_url("**/console/")
        assert page.get_by_role("heading", level=1).inner_text() == "Overview"
        page.get_by_role("link", name="Models").click()
        row = page.locator("#models tr", has_text="claude-haiku-5-5").first
        assert "available" in row.inner_text()
        fits(page, width)
        page.get_by_role("link", name="Keys").click()
        team = page.locator("#keys tr", has_text="team").first
        assert "of 50 per minute" in team.inner_text() and "of $10.00 this month" in team.inner_text()
        fits(page, width)
        page.get_by_role("link", name="Requests").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Requests"
        fits(page, width)
        assert TEAM not in page.content() and ADMIN not in page.content()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/console/login")
    finally:
        context.close()


def test_the_pages_are_reachable_from_the_keyboard(page: Page, stack: Stack) -> None:
    sign_in(page, stack.url)
    page.wait_for_url("**/console/")
    visited = []
    for _ in range(12):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert {"Skip to content", "Overview", "Accounts", "Models", "Keys", "Requests", "Sign out"} <= set(visited)
    while page.evaluate("document.activeElement.textContent.trim()") != "Keys":
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/keys")


# ------------------------------------------------------------------- the console alone, over a usage store

class Served:
    """The console's application on a loopback port, its loop in a thread of its own."""

    def __init__(self, console: Console) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(console,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the console's server started"

    def _run(self, console: Console) -> None:
        asyncio.set_event_loop(self._loop)
        root = web.Application()
        root.add_subapp("/console", console_app(console))
        self.runner = web.AppRunner(root)
        self._loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def alone() -> Iterator[Served]:
    runtime = Runtime(settings(auth={"admin_token": ADMIN}))
    usage = MemoryUsage(time.time)
    for i, (model, client, status) in enumerate([("gpt-5-mini", "team", 200), ("gpt-5-mini", "team", 429),
                                                 ("claude-haiku-5-5", "ci", 200), ("claude-haiku-5-5", "team", 200)]):
        usage.add(UsageRecord(f"rid-{i}", client, "openai", model, model, model.split("-")[0], "key#0", 1, status,
                              False, 0.2, 0.1, Usage(100 * (i + 1), 10), 0.001 * (i + 1)))
    served = Served(Console(runtime, LocalRateLimiter(), LocalSpend(), usage))
    yield served
    served.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_overview_draws_its_charts_and_table(browser: Browser, alone: Served, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: _problem(m, problems))
    try:
        sign_in(page, alone.url)
        page.wait_for_url("**/console/")
        page.wait_for_selector("section.charts[data-ready=true]")
        assert page.locator("section.charts canvas").count() == 4  # requests, errors, tokens, cost
        totals = page.locator("#totals tbody tr")
        assert totals.count() == 2 and "gpt-5-mini\t2\t1\t300\t20" in totals.all_inner_texts()[1]
        page.select_option("#by", "client")
        page.get_by_role("button", name="Show").click()
        page.wait_for_selector("section.charts[data-ready=true]")
        assert page.locator("#totals tbody tr").first.inner_text().startswith("team\t3\t1")
        fits(page, width)
    finally:
        context.close()
    assert problems == []


def test_the_requests_table_filters_in_place(page: Page, alone: Served) -> None:
    sign_in(page, alone.url)
    page.wait_for_url("**/console/")
    page.get_by_role("link", name="Requests").click()
    assert page.locator("#records tbody tr").count() == 4
    assert page.locator("#records tbody tr").first.inner_text().startswith("rid-3")  # the newest first
    page.get_by_label("Client key").fill("ci")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("document.querySelectorAll('#records tbody tr').length === 1")
    assert "rid-2" in page.locator("#records").inner_text()
    assert page.url.endswith("/console/requests?client=ci&model=&provider=&status=")  # htmx pushed the filter

