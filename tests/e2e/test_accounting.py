"""Accounting through the real stack: one usage record per request, /metrics, budgets, and the usage chunk the
gateway asks for on a client's behalf."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis
from google import genai
from google.genai import types as genai_types
from prometheus_client.parser import text_string_to_metric_families

from tests import secrets_registry
from tests.conftest import STATE_KEY, RedisServer, Stack, provider_config
from tests.fakes import FakeProvider
from tests.waits import eventually

TEAM, BUDGETED = "acct-team-key-0123456789", "acct-budget-key-0123456789"
PROMPT = "a prompt no log may show: 7f3a9c"  # the suite-wide scan fails if it is in any log line
secrets_registry.secret("accounting prompt", PROMPT)
CHAT = [{"role": "user", "content": PROMPT}]
GPT_COST = (3 * 0.15 + 4 * 0.6) / 1e6  # the fake's usage (3 in, 4 out) at gpt-4o-mini's catalog prices


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) → value


def scrape(stack: Stack) -> Samples:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(stack.metrics_url).text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes), "discovery": False, "clients": {"keys": [
        {"name": "team", "key": TEAM},
        {"name": "budgeted", "key": BUDGETED, "budget": {"usd": 2 * GPT_COST * 0.9, "per": "day"}}]}})


def test_each_api_gets_one_usage_record_with_tokens_and_cost(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT,
                                                       extra_headers={"x-request-id": "acct-oa-1"})
    assert "x-extproc-attempt" not in raw.headers  # who served it is for the record, not the client
    rec = stack.usage_record("acct-oa-1")
    assert (rec["client"], rec["requested_model"], rec["served_model"], rec["provider"], rec["credential"]) == \
        ("team", "gpt-4o-mini", "gpt-4o-mini", "openai", "openai:key1")
    assert (rec["status"], rec["outcome"], rec["attempts"], rec["streamed"]) == (200, "served", 1, False)
    assert (rec["input_tokens"], rec["output_tokens"]) == (3, 4)
    assert rec["cost_usd"] == pytest.approx(GPT_COST) and rec["latency_ms"] >= rec["ttft_ms"] > 0
    an = anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0)
    an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT,
                       extra_headers={"x-request-id": "acct-an-1"})
    rec = stack.usage_record("acct-an-1")
    assert (rec["api"], rec["input_tokens"], rec["output_tokens"]) == ("anthropic", 3, 4)
    assert rec["cost_usd"] == pytest.approx((3 * 0.1 + 4 * 0.5) / 1e6)
    gm = genai.Client(api_key=TEAM, http_options=genai_types.HttpOptions(
        base_url=stack.url, headers={"x-request-id": "acct-gm-1"}))
    gm.models.generate_content(model="gemini-3.8-flash", contents=PROMPT)
    rec = stack.usage_record("acct-gm-1")
    assert (rec["api"], rec["served_model"], rec["input_tokens"], rec["output_tokens"]) == \
        ("gemini", "gemini-3.8-flash", 3, 4)
    assert TEAM not in stack.logs() and "hello from" not in stack.logs()  # no key, no completion logged


def test_metrics_count_requests_tokens_and_cost_by_the_gen_ai_names(stack: Stack) -> None:
    before = scrape(stack)
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0)
    for _ in range(3):
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=stack.url + "/v1", api_key="wrong-key", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT)
    model = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini",
             "gen_ai_response_model": "gpt-4o-mini"}
    expected: list[tuple[str, dict[str, str], float]] = [
        ("gen_ai_client_token_usage_count", {"gen_ai_token_type": "input", **model}, 3),
        ("gen_ai_client_token_usage_sum", {"gen_ai_token_type": "output", **model}, 12),
        ("gen_ai_server_request_duration_seconds_count", model, 3),
        ("gen_ai_server_time_to_first_token_seconds_count", model, 3),
        ("extproc_requests_total", {"outcome": "served", "status": "200", "client": "team"}, 3),
        ("extproc_requests_total", {"outcome": "rejected", "status": "401"}, 1),
        ("extproc_cost_usd_total", {"client": "team"}, 3 * GPT_COST)]

    def grew(after: Samples, name: str, labels: dict[str, str]) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    def counted() -> Samples | None:
        now = scrape(stack)
        return now if all(grew(now, name, labels) >= value * 0.999 for name, labels, value in expected) else None

    after = eventually(counted, "the four requests are counted")  # as their records are written, after the answers
    for name, labels, value in expected:
        assert grew(after, name, labels) == pytest.approx(value), (name, labels)
    # The processor's own time per message (the refused key's headers at least; the others may have gone fast).
    assert grew(after, "extproc_processor_message_seconds_count", {"kind": "request_headers"}) >= 1


def test_a_key_over_its_budget_gets_429_until_the_period_resets(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=BUDGETED, max_retries=0)
    for i in range(2):
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-request-id": f"acct-b-{i}"})
    stack.usage_record("acct-b-1")  # the second answer is charged as its record is written, before the next request
    # Served fast, the key is refused once the gateway has seen the spend and Envoy has dropped its routes.
    eventually(lambda: not [n for n in stack.fast_routes() if " budgeted " in n], "the spent key's routes are gone")
    sent = len(fakes["openai"].requests)
    with pytest.raises(openai.RateLimitError) as refused:
        oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    assert refused.value.code == "budget_exceeded"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 86400
    assert len(fakes["openai"].requests) == sent  # nothing went upstream
    assert openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT).choices


def test_budgets_and_metrics_hold_across_gateways_and_workers_sharing_redis(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    prefix = f"acct{time.monotonic_ns()}:"
    config = {"providers": provider_config(fakes), "discovery": False, "processor": {"workers": 2},
              "clients": {"keys": [{"name": "shared", "key": BUDGETED,
                                    "budget": {"usd": 3 * GPT_COST * 0.9, "per": "month"}}]},
              "state": {"redis": {"url": redis_server.url, "prefix": prefix, "key": STATE_KEY}}}
    first, second = make_stack(config), make_stack(config)
    body = {"model": "gpt-4o-mini", "messages": CHAT}
    headers = {"authorization": f"Bearer {BUDGETED}"}
    shared = redis.Redis.from_url(redis_server.url)

    def spent() -> float:
        """What the gateways have charged the key, in the Redis they share."""
        return sum(float(shared.get(key) or 0) for key in shared.scan_iter(f"{prefix}spend:shared:*"))

    def charged(count: int) -> None:
        """Until `count` answers' charges are in Redis (each is written as its answer comes in)."""
        eventually(lambda: spent() >= count * GPT_COST * 0.999, f"{count} charges reach Redis")

    statuses = []
    for stack in (first, second, first, second, first):
        statuses.append(httpx.post(stack.url + "/v1/chat/completions", json=body, headers=headers).status_code)
        charged(statuses.count(200))  # before the next request, whichever gateway it goes to
        if spent() >= 3 * GPT_COST * 0.9:  # and, once it is spent, once Envoy has dropped the key's fast routes
            eventually(lambda: not [n for s in (first, second) for n in s.fast_routes() if " shared " in n],
                       "the spent key's routes are gone from both gateways")
    assert statuses == [200, 200, 200, 429, 429]
    # Each gateway's /metrics adds up its two workers: all its requests, whichever worker served them.
    served = [total(scrape(s), "extproc_requests_total", outcome="served", client="shared") for s in (first, second)]
    assert served == [2, 1]


def test_extproc_top_shows_traffic_cost_and_credentials_of_a_running_gateway(stack: Stack) -> None:
    import subprocess
    import sys

    openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=CHAT)
    shown = subprocess.run([sys.executable, "-m", "extproc", "top", "--once", "--config", str(stack.config_path),
                            "--key", TEAM], capture_output=True, text=True, timeout=60, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "gpt-4o-mini" in out and "team" in out and "openai:key1" in out and "req/s" in out
    assert TEAM not in out
