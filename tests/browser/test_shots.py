"""The console's pages as the docs show them: a gateway with fake providers and a spread of traffic (two models, two
client keys, a refused request, a rate-limited one, a Claude login made in the browser with its windows), each page
taken as a PNG at 1280 px, and the Overview at 375 px too.

It runs with the rest of the suite, so the scene the docs show keeps working: every page renders it with no error
in the browser. It writes the PNGs only when EXTPROC_CONSOLE_SHOTS names a directory; to refresh the docs' images:

    EXTPROC_CONSOLE_SHOTS=docs/console .venv/bin/pytest -q tests/browser/test_shots.py

(A test rather than a script: it takes the suite's own fixtures — fake providers, the fake OAuth server, a stack
stopped and checked for leaked secrets at the end — as they are, instead of a second copy that would drift.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Pages, fits, json_of, log_in_to_claude, windows_reported, windows_shown
from tests.conftest import SECRETS, Stack
from tests.e2e.test_console import CHAT, TEAM
from tests.e2e.test_logins import login_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually

SHOTS = "EXTPROC_CONSOLE_SHOTS"  # a directory to write the PNGs to
CI = "ci-key-console-0123456789"
MAX_BYTES = 300_000  # each image, to keep the repository small
# (file, page, width, what it must show): each page at 1280 px, the Overview at a phone's 375 px too.
VIEWS = [("overview.png", "/console/?range=hour&by=model", 1280, "gpt-4o-mini\t7\t2"),
         ("accounts.png", "/console/accounts", 1280, "5h: 42% used"),
         ("models.png", "/console/models?provider=openai", 1280, "cooling down until"),
         ("keys.png", "/console/keys", 1280, "of 20,000 per minute"),
         ("requests.png", "/console/requests", 1280, "403 (rejected)"),
         ("overview-375.png", "/console/?range=hour&by=client", 375, "team")]


@pytest.fixture
def stack(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
          make_stack: Callable[[dict[str, Any]], Stack], admin_token: str) -> Stack:
    """OpenAI by its key, Anthropic by a Claude login (made in the browser), two client keys in a team; one worker,
    whose health and counters every page shows (without state.redis, each worker has its own)."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    config["auth"]["admin_token"] = admin_token
    config["providers"]["openai"]["api_key"] = SECRETS["openai"]
    config["processor"] = {"workers": 1}  # one worker's health and counters, whichever serves a page
    config["clients"] = {"keys": [{"name": "team", "key": TEAM, "rpm": 60, "budget": {"usd": 25, "per": "month"}},
                                  {"name": "ci", "key": CI, "models": ["claude-*"], "rpm": 20}],
                         "teams": {"platform": {"keys": ["team", "ci"], "tpm": 20000,
                                                "budget": {"usd": 100, "per": "week"}}}}
    return make_stack(config)


def chat(stack: Stack, key: str, model: str) -> int:
    return httpx.post(stack.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": CHAT}).status_code


def message(stack: Stack, key: str) -> int:
    return httpx.post(stack.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}).status_code


def traffic(stack: Stack, fakes: dict[str, FakeProvider]) -> int:
    """Requests of both keys on both models, a model the ci key may not use, and a 429 that leaves OpenAI's key
    cooling down; how many were sent."""
    statuses = [chat(stack, TEAM, "gpt-4o-mini") for _ in range(5)] + [message(stack, TEAM) for _ in range(2)]
    statuses += [message(stack, CI) for _ in range(4)] + [chat(stack, CI, "gpt-4o-mini")]
    fakes["openai"].script(429, {"retry-after": "900"})
    statuses.append(chat(stack, TEAM, "gpt-4o-mini"))
    assert statuses == [200] * 11 + [403, 429]
    return len(statuses)


def test_each_page_of_the_console_with_a_gateways_traffic(pages: Pages, stack: Stack, fakes: dict[str, FakeProvider],
                                                         oauth: FakeOAuth) -> None:
    page = pages.signed_in(stack.url)
    log_in_to_claude(page)
    windows_reported(fakes, stack.url, {"x-api-key": TEAM})
    sent = 1 + traffic(stack, fakes)
    windows_shown(page, stack.url)

    def cooling() -> bool:  # what an attempt got reaches the processor through Envoy's access log, a moment later
        page.goto(stack.url + "/console/models?provider=openai")
        return "cooling down until" in page.inner_text("main")
    eventually(cooling, "the Models page shows OpenAI's key cooling down after its 429")

    def counted() -> bool:
        doc = json_of(page, "/console/api/series?range=hour")
        return sum(sum(line) for line in doc["metrics"]["requests"]) == sent
    eventually(counted, "the usage store counts every request sent")

    into = os.environ.get(SHOTS)
    for name, path, width, shows in VIEWS:
        shot = pages.open(width) if width != 1280 else page
        if shot is not page:
            shot.context.add_cookies(page.context.cookies())  # the same session
        shot.goto(stack.url + path)
        assert shot.url.endswith(path), f"{path}: signed in"
        if path.startswith("/console/?"):
            shot.wait_for_selector("section.charts[data-ready=true]")
        assert shows in shot.inner_text("main"), f"{path} shows {shows!r}"
        fits(shot, width)
        png = shot.screenshot(full_page=True, animations="disabled")
        if into:
            assert len(png) <= MAX_BYTES, f"{name}: {len(png)} bytes"
            Path(into, name).write_bytes(png)
