"""Gauges of the current state in /metrics, through the real stack: a credential's cooldown and its end, a client
key's budget left and requests this minute, and the same figures from every worker sharing Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import STATE_KEY, RedisServer, Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
SPENDER, COUNTED = "gauge-spender-key-0123456789", "gauge-counted-key-0123456789"
TOKEN = "gauge-processor-token-0123456789"
COST = (3 + 4 * 4) * 1.0 / 1e6  # the fake's usage (3 in, 4 out) at the lane model's prices
Gauges = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) → value


def gauges(text: str) -> Gauges:
    """The gauges of the current state in an exposition (the counters and histograms left out)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
            if family.type == "gauge" for s in family.samples}


def scrape(stack: Stack) -> Gauges:
    return gauges(httpx.get(stack.metrics_url).text)


def value(found: Gauges, gauge: str, /, **labels: str) -> float | None:
    matched = [v for (n, ls), v in found.items() if n == gauge and dict(ls) == labels]
    assert len(matched) <= 1, (gauge, labels, matched)
    return matched[0] if matched else None


def config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    """A provider of its own for these tests (pointed at the shared OpenAI fake), so what they teach health is
    theirs (`gauge-cooled` is the model they cool, `gauge-model` the one they spend on); one key with a budget
    smaller than one request, one with requests per minute."""
    return {
        "providers": {"gauge-lane": {"base_url": fakes["openai"].base_url, "api_key": "sk-gauge-lane-secret",
                                     "apis": {"openai": "/v1"}}},
        "models": [{"id": name, "provider": "gauge-lane", "context_window": 100000, "input_price": 1.0,
                    "output_price": 4.0} for name in ("gauge-model", "gauge-cooled")],
        "discovery": False, "fast_path": False, "failover": {"attempts": 1},
        "clients": {"keys": [{"name": "spender", "key": SPENDER, "budget": {"usd": COST * 0.9, "per": "day"}},
                             {"name": "counted", "key": COUNTED, "rpm": 100}]}}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(config(fakes))


def cooled(stack: Stack, fakes: dict[str, FakeProvider], retry_after: int) -> float:
    """A 429 with `retry-after` on the lane's credential for one model (the others serve on); returns when it was
    asked."""
    fakes["openai"].script(429, {"retry-after": str(retry_after)})
    asked = time.time()
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=f"{stack.url}/v1", api_key=COUNTED, max_retries=0).chat.completions.create(
            model="gauge-cooled", messages=CHAT)
    return asked


def test_a_credential_has_a_row_for_all_its_models_and_is_available(stack: Stack) -> None:
    found = scrape(stack)
    every = {"provider": "gauge-lane", "credential": "gauge-lane:key1", "model": "*"}
    assert value(found, "extproc_credential_available", **every) == 1
    assert value(found, "extproc_credential_cooldown_until_seconds", **every) == 0
    assert value(found, "extproc_credential_suspended_until_seconds", **every) == 0


def test_a_429_cools_the_credential_and_the_gauge_shows_when_it_ends(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    asked = cooled(stack, fakes, 600)
    row = {"provider": "gauge-lane", "credential": "gauge-lane:key1", "model": "gauge-cooled"}

    def blocked() -> Gauges | None:
        found = scrape(stack)
        return found if value(found, "extproc_credential_available", **row) == 0 else None

    found = eventually(blocked, "the cooldown shows in /metrics")  # learned from Envoy's log, just after the answer
    until = value(found, "extproc_credential_cooldown_until_seconds", **row)
    assert until is not None and asked + 600 - 1 <= until <= time.time() + 600
    assert value(found, "extproc_credential_suspended_until_seconds", **row) == 0
    # Its other models are not blocked: the row for all of them says it can serve.
    assert value(found, "extproc_credential_available", **{**row, "model": "*"}) == 1


def test_a_spent_budget_shows_as_nothing_left_and_rpm_as_used(stack: Stack) -> None:
    key = {"owner": "key", "name": "spender"}
    found = scrape(stack)
    assert value(found, "extproc_budget_usd", **key) == pytest.approx(COST * 0.9)
    assert value(found, "extproc_budget_remaining_usd", **key) == pytest.approx(COST * 0.9)
    assert value(found, "extproc_budget_resets_at_seconds", **key) == (time.time() // 86400 + 1) * 86400
    openai.OpenAI(base_url=f"{stack.url}/v1", api_key=SPENDER, max_retries=0).chat.completions.create(
        model="gauge-model", messages=CHAT)
    eventually(lambda: value(scrape(stack), "extproc_budget_remaining_usd", **key) == 0,
               "the spent budget shows as 0 left")  # charged as the answer's usage record is written

    counted = {"owner": "key", "name": "counted"}
    before = value(scrape(stack), "extproc_requests_per_minute_used", **counted)
    assert before is not None
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=COUNTED, max_retries=0)
    for _ in range(2):
        oa.chat.completions.create(model="gauge-model", messages=CHAT)
    found = scrape(stack)
    assert value(found, "extproc_requests_per_minute_limit", **counted) == 100
    used = value(found, "extproc_requests_per_minute_used", **counted)
    assert used is not None and used > before  # the sliding minute: the two requests counted, older ones fading
    # A key without a limit or a budget has no row (nothing to show), and no key's secret is in a label.
    assert not [k for k in found if dict(k[1]).get("name") == "team"]
    text = httpx.get(stack.metrics_url).text
    assert SPENDER not in text and COUNTED not in text


def test_workers_sharing_redis_tell_the_same_figures_on_every_scrape(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    prefix = f"gauges{time.monotonic_ns()}:"
    stack = make_stack({**config(fakes), "processor": {"workers": 2, "token": TOKEN},
                        "state": {"redis": {"url": redis_server.url, "prefix": prefix, "key": STATE_KEY}}})
    cooled(stack, fakes, 600)
    httpx.post(f"{stack.url}/v1/chat/completions", json={"model": "gauge-model", "messages": CHAT},
               headers={"authorization": f"Bearer {SPENDER}"}).raise_for_status()
    row = {"provider": "gauge-lane", "credential": "gauge-lane:key1", "model": "gauge-cooled"}
    key = {"owner": "key", "name": "spender"}
    base = int(httpx.URL(stack.metrics_url).port or 0) - 2  # the stack's block of ports: relay i at base + 3 + 2 + i
    relays = [f"http://127.0.0.1:{base + 5 + i}/extproc/gauges" for i in range(2)]

    def settled() -> bool:
        """Both workers know the cooldown (learned by one, shared through Redis) and the charge."""
        told = [gauges(httpx.get(url, headers={"x-extproc-token": TOKEN}).text) for url in relays]
        return all(value(g, "extproc_credential_available", **row) == 0
                   and value(g, "extproc_budget_remaining_usd", **key) == 0 for g in told)

    eventually(settled, "both workers tell the cooldown and the spent budget")

    def state(found: Gauges) -> Gauges:
        """What does not move with the clock (requests this minute fade as the minute slides)."""
        return {k: v for k, v in found.items() if k[0] != "extproc_requests_per_minute_used"}

    scrapes = [state(scrape(stack)) for _ in range(4)]
    direct = [state(gauges(httpx.get(url, headers={"x-extproc-token": TOKEN}).text)) for url in relays]
    assert all(s == scrapes[0] for s in scrapes + direct)
    assert value(scrapes[0], "extproc_credential_cooldown_until_seconds", **row) > time.time() + 500
    # Only the processor's own (Envoy, the supervisor) may ask a worker.
    assert httpx.get(relays[0]).status_code == 403
