"""The web console in a real browser (Debian's Chromium, headless, driven by Playwright) against a running gateway
through Envoy, fake providers behind it, and its default usage store (the SQLite file): requests sent through the
gateway first, then sign in, a wrong admin token refused, each page rendered with those figures at 1280 and 375 px,
the Overview's charts drawn by uPlot from the store's sparse series, the Requests table filtered by htmx, the
keyboard; and no script or style the page's security policy refuses (the `pages` fixture fails on any)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import WIDTHS, Pages, fits, json_of, sign_in
from tests.conftest import Stack
from tests.e2e.test_console import ADMIN, CHAT, CI_KEY, TEAM, console_config
from tests.fakes import FakeProvider
from tests.waits import eventually

CI = CI_KEY  # the `ci` key of console_config (given there by its sha256 only); it may use claude-* only


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(console_config(fakes))


def chat(stack: Stack, key: str, model: str) -> httpx.Response:
    return httpx.post(stack.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": CHAT})


def message(stack: Stack, key: str, model: str) -> httpx.Response:
    return httpx.post(stack.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": model, "max_tokens": 5, "messages": CHAT})


# What the module sends through the gateway before any test: (client key, its name, model, the status it gets).
TRAFFIC = [(TEAM, "team", "gpt-5-mini", 200), (TEAM, "team", "gpt-5-mini", 200), (TEAM, "team", "gpt-5-mini", 200),
           (CI, "ci", "claude-haiku-5-5", 200), (CI, "ci", "claude-haiku-5-5", 200),
           (TEAM, "team", "claude-haiku-5-5", 200), (CI, "ci", "gpt-5-mini", 403)]  # ci may not use gpt-*


SENT: list[float] = []  # when the module's traffic began and ended (epoch seconds)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> list[str]:
    """The request ids of TRAFFIC, once the usage store holds every one (each worker writes its batch every
    second: the Overview's own JSON is read until it counts them all)."""
    ids = []
    SENT.append(time.time())
    for key, _, model, status in TRAFFIC:
        answer = (message if model.startswith("claude") else chat)(stack, key, model)
        assert answer.status_code == status, answer.text
        ids.append(answer.headers["x-request-id"])
    SENT.append(time.time())
    with httpx.Client(base_url=stack.url) as console:
        assert console.post("/console/login", data={"token": ADMIN}).status_code == 303

        def counted() -> bool:
            doc = console.get("/console/api/series", params={"range": "hour", "by": "client"}).json()
            return sum(sum(line) for line in doc["metrics"]["requests"]) == len(TRAFFIC)
        eventually(counted, "the usage store counts every request sent")
    return ids


def test_a_wrong_admin_token_is_refused_in_the_browser(page: Page, stack: Stack) -> None:
    sign_in(page, stack.url, ADMIN + "-wrong")
    assert page.get_by_role("alert").inner_text().startswith("Refused")
    assert page.url.endswith("/console/login")
    page.goto(stack.url + "/console/models")
    assert page.url.endswith("/console/login")  # still no session


@pytest.mark.parametrize("width", WIDTHS)
def test_each_page_renders_with_the_gateways_figures(pages: Pages, stack: Stack, traffic: list[str],
                                                     width: int) -> None:
    page = pages.signed_in(stack.url, width)
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    page.wait_for_selector("section.charts[data-ready=true]")
    assert page.locator("#totals tbody tr").count() == 2  # gpt-5-mini and claude-haiku-5-5
    fits(page, width)
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
    assert page.locator("#records tbody tr").count() == len(TRAFFIC)
    fits(page, width)
    assert TEAM not in page.content() and ADMIN not in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")


def test_the_pages_are_reachable_from_the_keyboard(signed_in: Page) -> None:
    page = signed_in
    visited = []
    for _ in range(12):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert {"Skip to content", "Overview", "Accounts", "Models", "Keys", "Requests", "Sign out"} <= set(visited)
    while page.evaluate("document.activeElement.textContent.trim()") != "Keys":
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/keys")


# How many pixels of a chart's canvas are drawn in a colour: the first value's line is the palette's first colour.
PIXELS_OF = """(canvas, [r, g, b]) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - r) < 8 && Math.abs(data[i + 1] - g) < 8 && Math.abs(data[i + 2] - b) < 8) n++;
  }
  return n;
}"""
FIRST_LINE = (0x0A, 0x58, 0xCA)  # PALETTE[0] in console.js


def expected_by(dimension: str) -> dict[str, tuple[int, int]]:
    """TRAFFIC's requests and errors per value of a dimension (model or client), as the Overview's table sums."""
    found: dict[str, tuple[int, int]] = {}
    for _, client, model, status in TRAFFIC:
        value = model if dimension == "model" else client
        requests, errors = found.get(value, (0, 0))
        found[value] = (requests + 1, errors + (status >= 400))
    return found


def table(page: Page) -> dict[str, tuple[int, int]]:
    rows = [row.split("\t") for row in page.locator("#totals tbody tr").all_inner_texts()]
    return {cells[0]: (int(cells[1]), int(cells[2])) for cells in rows}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_overview_draws_the_stores_sparse_series_and_sums_them(pages: Pages, stack: Stack, traffic: list[str],
                                                                    width: int) -> None:
    page = pages.signed_in(stack.url, width)
    page.select_option("#range", "hour")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("section.charts[data-ready=true]")
    assert table(page) == expected_by("model")
    doc = json_of(page, "/console/api/series?range=hour&by=model")
    # The store keeps only the minutes that had requests; the page's series has all 60, the others zero (a count
    # of nothing, drawn as a line at 0 rather than a gap), and sums to the table.
    assert len(doc["x"]) == 60 and all(b - a == 60 for a, b in zip(doc["x"], doc["x"][1:], strict=False))
    for metric in ("requests", "errors", "tokens", "cost"):
        assert all(len(line) == 60 and None not in line for line in doc["metrics"][metric])
    busy = {doc["x"][i] for line in doc["metrics"]["requests"] for i, v in enumerate(line) if v}
    # The minutes the traffic was sent in (one, or two across a minute's end), however long ago the module sent it.
    assert busy and busy <= set(range(int(SENT[0] // 60) * 60, int(SENT[-1] // 60) * 60 + 1, 60))
    sums = {v: (sum(r), sum(e)) for v, r, e in zip(doc["values"], doc["metrics"]["requests"],
                                                   doc["metrics"]["errors"], strict=True)}
    assert sums == expected_by("model")
    charts = page.locator("section.charts canvas")
    assert charts.count() == 4  # requests, errors, tokens, cost
    for i in range(4):
        assert charts.nth(i).evaluate(PIXELS_OF, [*FIRST_LINE]) > 0, f"chart {i} draws the busiest value's line"
    legend = page.locator("section.charts .u-legend").first.inner_text()
    assert "gpt-5-mini" in legend and "claude-haiku-5-5" in legend

    page.select_option("#by", "client")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("section.charts[data-ready=true]")
    assert table(page) == expected_by("client")
    assert page.locator("#totals tbody tr").first.inner_text().startswith("team\t4\t0")  # the busiest first
    fits(page, width)


def test_the_requests_table_lists_the_latest_and_filters_in_place(signed_in: Page, traffic: list[str]) -> None:
    page = signed_in
    page.get_by_role("link", name="Requests").click()
    rows = page.locator("#records tbody tr")
    assert rows.count() == len(TRAFFIC)
    assert [r.split("\t")[0] for r in rows.all_inner_texts()] == traffic[::-1]  # the newest first, by request id
    assert "403" in rows.first.inner_text()
    page.get_by_label("Client key").fill("ci")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)  # once htmx swapped the table in
    assert {r.split("\t")[0] for r in rows.all_inner_texts()} == {traffic[3], traffic[4], traffic[6]}
    assert page.url.endswith("/console/requests?client=ci&model=&provider=&status=")  # htmx pushed the filter
    page.get_by_label("Status").fill("403")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    link = rows.first.get_by_role("link")
    assert link.inner_text() == traffic[6] and link.get_attribute("href") == f"#rid-{traffic[6]}"
