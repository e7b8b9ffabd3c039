"""Tokens per minute and teams through real Envoy: over a limit, 429 with retry-after in the client's envelope and
nothing upstream; a team's budget spent by one key refuses the others (fast path included); two replicas sharing
Redis under concurrent requests stay within the overshoot docs/configuration.md states."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import STATE_KEY, RedisServer, Stack, provider_config
from tests.e2e.test_gauges import scrape, value
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
METERED, SPENDER, SHARER, QUIET = ("metered-key-0123456789ab", "spender-key-0123456789ab", "sharer-key-0123456789abc",
                                   "quiet-key-0123456789abcd")
ANSWER_TOKENS = 7  # every fake answer reports 3 input and 4 output tokens
GPT_COST = (3 * 0.15 + 4 * 0.6) / 1e6  # at gpt-4o-mini's catalog prices


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes), "discovery": False, "clients": {
        "keys": [{"name": "metered", "key": METERED, "tpm": 10},
                 {"name": "spender", "key": SPENDER}, {"name": "sharer", "key": SHARER},
                 {"name": "quiet", "key": QUIET}],
        "teams": {"payers": {"keys": ["spender", "sharer"], "budget": {"usd": 2.5 * GPT_COST, "per": "week"}},
                  "counted": {"keys": ["quiet"], "tpm": 100000}}}})


def test_a_key_over_its_tokens_per_minute_gets_429_with_retry_after_in_its_envelope_and_nothing_goes_upstream(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=METERED, max_retries=0)
    for i in range(2):  # 7 tokens, under 10; then 14: at or over it
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-request-id": f"tpm-{i}"})
        stack.usage_record(f"tpm-{i}")  # charged as its record is written
    # /metrics shows it: the limit, and the tokens counted this minute (its charge is written a moment after).
    eventually(lambda: (value(scrape(stack), "extproc_tokens_per_minute_used", owner="key", name="metered") or 0)
               >= 2 * ANSWER_TOKENS, "the tokens used show as a gauge")
    assert value(scrape(stack), "extproc_tokens_per_minute_limit", owner="key", name="metered") == 10
    assert value(scrape(stack), "extproc_tokens_per_minute_limit", owner="team", name="counted") == 100000
    sent = sum(len(f.requests) for f in fakes.values())
    with pytest.raises(openai.RateLimitError) as over_openai:
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert over_openai.value.code == "rate_limit_exceeded"
    assert "'metered' is over its 10 tokens per minute" in over_openai.value.message
    assert 1 <= int(over_openai.value.response.headers["retry-after"]) <= 120
    an = anthropic.Anthropic(base_url=stack.url, api_key=METERED, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as over_anthropic:
        an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    body = over_anthropic.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(over_anthropic.value.response.headers["retry-after"]) <= 120
    assert sum(len(f.requests) for f in fakes.values()) == sent  # nothing went upstream


def test_a_team_budget_spent_by_one_key_refuses_another_on_either_path(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=SHARER, max_retries=0)
    oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # the model is asked for: it gets its routes
    # The team's keys go fast (it counts no rpm or tpm); a key in a team counted per minute never does.
    eventually(lambda: [n for n in stack.fast_routes() if " sharer " in n], "the sharer's fast route")
    assert not [n for n in stack.fast_routes() if " quiet " in n]
    spender = openai.OpenAI(base_url=stack.url + "/v1", api_key=SPENDER, max_retries=0)
    # The sharer's answer spent 1 of the team's 2.5; the spender's first leaves 0.5, so its second is served
    # whether or not the first's charge has landed, and spends the rest.
    for i in range(2):
        spender.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-request-id": f"team-{i}"})
        stack.usage_record(f"team-{i}")
    # Every key of the team leaves the fast path; the full path refuses them.
    eventually(lambda: not [n for n in stack.fast_routes() if " sharer " in n or " spender " in n],
               "the team's routes are gone")
    assert value(scrape(stack), "extproc_budget_remaining_usd", owner="team", name="payers") == 0.0
    sent = len(fakes["openai"].requests)
    with pytest.raises(openai.RateLimitError) as refused:
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert refused.value.code == "budget_exceeded"
    assert "The team 'payers' of the client key 'sharer' has spent" in refused.value.message
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 7 * 86400
    assert len(fakes["openai"].requests) == sent
    quiet = openai.OpenAI(base_url=stack.url + "/v1", api_key=QUIET, max_retries=0)  # another team: served
    assert quiet.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT).headers["x-extproc-route"] == "direct"


TPM, THREADS = 210, 8  # 30 answers' worth, 4 clients on each replica


def test_two_replicas_sharing_redis_stay_within_the_documented_overshoot_under_concurrent_requests(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = {"providers": provider_config(fakes), "discovery": False,
              "clients": {"keys": [{"name": "burst", "key": METERED, "tpm": TPM}]},
              "state": {"redis": {"url": redis_server.url, "prefix": f"tpm{time.monotonic_ns()}:", "key": STATE_KEY}}}
    replicas = [make_stack(config), make_stack(config)]
    # The bound holds per minute of the clock: start where the burst (a second or two) ends in the same minute.
    eventually(lambda: time.time() % 60 < 40, "a minute with 20 s left", timeout=25)
    minute = int(time.time() // 60)

    def client(i: int) -> int:
        """Requests until one is refused; how many were served."""
        url = replicas[i % 2].url + "/v1/chat/completions"
        with httpx.Client(headers={"authorization": f"Bearer {METERED}"}, timeout=30) as http:
            for served in range(TPM):
                answer = http.post(url, json={"model": "gpt-4o-mini", "messages": CHAT})
                if answer.status_code == 429:
                    assert answer.json()["error"]["code"] == "rate_limit_exceeded" and answer.headers["retry-after"]
                    return served
                assert answer.status_code == 200
        raise AssertionError("never refused")

    with ThreadPoolExecutor(THREADS) as pool:
        served = sum(pool.map(client, range(THREADS)))
    assert int(time.time() // 60) == minute, "the burst crossed a minute"
    used = served * ANSWER_TOKENS
    # Admitted while under the limit, so at least the limit is served; past it, only what was in flight when the
    # count reached it (each client's request, and its answer just before whose charge was still being written).
    assert TPM <= used <= TPM + 2 * THREADS * ANSWER_TOKENS, used  # counted per replica, it would be 2 × TPM
    assert len(fakes["openai"].requests) == served  # a refused request never went upstream
    for replica in replicas:  # both refuse: the count is the one they share
        refused = httpx.post(replica.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": CHAT},
                             headers={"authorization": f"Bearer {METERED}"})
        assert refused.status_code == 429
