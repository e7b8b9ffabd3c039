"""Client keys on the fast path: Envoy checks the keys it can (configured as themselves, not counted per minute,
budget not spent) and serves their requests alone, charged to the key; every other key falls through to the
processor, which checks it as always."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import STATE_KEY, RedisServer, Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
KEY_A, KEY_B = "k-keyed-primary", "k-keyed-backup"
TEAM, HASHED, COUNTED, A_ONLY = ("team-key-0123456789abcdef", "hashed-key-0123456789abcd", "counted-key-0123456789ab",
                                 "a-only-key-0123456789abcd")
CAPPED = "capped-key-0123456789abcd"
KEYS = [{"name": "team", "key": TEAM}, {"name": "hashed", "sha256": hashlib.sha256(HASHED.encode()).hexdigest()},
        {"name": "counted", "key": COUNTED, "rpm": 1000},
        {"name": "a-only", "key": A_ONLY, "models": ["fa-model"]}]  # not its fallback: planned otherwise
# Each answer of the fakes reports 3 prompt tokens: at $0.1 a token, a request costs $0.3.
CAPPED_KEY = {"name": "capped", "key": CAPPED, "budget": {"usd": 1, "per": "day"}}


def config(fakes: dict[str, FakeProvider], keys: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    model = {"context_window": 100000, "capabilities": ["tools", "vision", "reasoning", "structured_output"]}
    return {
        "discovery": False, "strategy": "none", "translation": False,
        "providers": {"fa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": KEY_A},
                      "fb": {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"}, "api_key": KEY_B},
                      "fm": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                             "auth": "x-api-key", "api_key": "k-keyed-anthropic",
                             "headers": {"anthropic-version": "2023-06-01"}}},
        "models": [{"id": "fa-model", "provider": "fa", "input_price": 100000.0, **model},
                   {"id": "fb-model", "provider": "fb", **model}, {"id": "fm-model", "provider": "fm", **model}],
        "fallbacks": {"fa-model": ["fb-model"]},
        "clients": {"keys": keys}, **extra}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(config(fakes, KEYS))


def chat(stack: Stack, key: str, model: str = "fa-model", rid: str | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(stack.url + "/v1/chat/completions", json={"model": model, "messages": CHAT},
                      headers={"authorization": f"Bearer {key}", **({"x-request-id": rid} if rid else {}),
                               **(headers or {})})


def until_fast(post: Callable[[], httpx.Response]) -> httpx.Response:
    """The first answer that went fast (once the routes file Envoy watches has the model's route)."""
    def fast() -> httpx.Response | None:
        answer = post()
        return answer if answer.headers.get("x-extproc-route", "").endswith("; fast") else None
    return eventually(fast, "a request goes fast")


def routed(stack: Stack) -> int:
    return stack.logs().count('"message":"route rid=')


def test_a_key_envoy_checks_is_served_fast_in_each_sdks_way_and_charged_to_its_name(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack, TEAM))
    until_fast(lambda: httpx.post(stack.url + "/v1/messages", headers={"x-api-key": TEAM}, json={
        "model": "fm-model", "max_tokens": 5, "messages": CHAT}))
    before = routed(stack)
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(  # type: ignore[arg-type]
        model="fa-model", messages=CHAT, extra_headers={"x-request-id": "keyed-openai"})
    assert raw.headers["x-extproc-route"] == "direct; fast" and raw.parse().choices[0].message.content
    an = anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0)  # as x-api-key
    answer = an.messages.with_raw_response.create(model="fm-model", max_tokens=5, messages=CHAT,  # type: ignore
                                                  extra_headers={"x-request-id": "keyed-anthropic"})
    assert answer.headers["x-extproc-route"] == "direct; fast"
    assert routed(stack) == before  # not one message to the processor for either
    assert fakes["openai"].requests[-1].headers["authorization"] == f"Bearer {KEY_A}"
    assert fakes["anthropic"].requests[-1].headers["x-api-key"] == "k-keyed-anthropic"
    sent = [r for name in ("openai", "anthropic") for r in fakes[name].requests]
    assert all(TEAM not in str(r.headers) for r in sent)  # the client's key never goes on
    for rid in ("keyed-openai", "keyed-anthropic"):
        record = stack.usage_record(rid)
        assert record["client"] == "team" and record["route"] == "direct; fast"
    metrics = httpx.get(stack.metrics_url).text
    assert 'client="team"' in metrics


def test_keys_envoy_cannot_check_fall_through_to_the_processor_which_checks_them(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack, TEAM))
    for key, name in ((HASHED, "hashed"), (COUNTED, "counted"), (A_ONLY, "a-only")):
        rid = f"through-{name}"
        answer = chat(stack, key, rid=rid)
        assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct", name
        assert stack.usage_record(rid)["client"] == name
    wrong = chat(stack, "wrong-key-0123456789abcdef")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    cased = chat(stack, TEAM, headers={"authorization": f"bearer {TEAM}"})  # served, by the processor's reading
    assert cased.status_code == 200 and cased.headers["x-extproc-route"] == "direct"
    # The key a route takes must be the whole header: one the route knows plus anything is another key.
    longer = chat(stack, TEAM + "x")
    assert longer.status_code == 401 and not longer.headers.get("x-extproc-route")


def test_a_client_cannot_name_itself(stack: Stack) -> None:
    until_fast(lambda: chat(stack, TEAM))
    fast = chat(stack, TEAM, rid="forged-fast", headers={"x-extproc-client": "a-only"})
    assert fast.headers["x-extproc-route"] == "direct; fast"
    assert stack.usage_record("forged-fast")["client"] == "team"
    full = chat(stack, HASHED, rid="forged-full", headers={"x-extproc-client": "team"})
    assert full.headers["x-extproc-route"] == "direct" and stack.usage_record("forged-full")["client"] == "hashed"


def test_a_key_limited_to_a_model_but_not_its_fallback_gets_what_the_full_path_gives(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack, TEAM))
    fakes["openai"].script(429, {"retry-after": "1"})
    refused = chat(stack, A_ONLY)  # its only candidate cools: the full path does not fail over for it
    assert refused.status_code == 429 and refused.headers["x-extproc-route"] == "direct"
    assert not [r for r in fakes["groq"].requests if r.headers.get("authorization") == f"Bearer {KEY_B}"]


def test_a_spent_budget_leaves_the_routes_of_every_replica_and_is_refused_in_the_clients_envelope(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    state = {"redis": {"url": redis_server.url, "prefix": f"budget{time.monotonic_ns()}:", "key": STATE_KEY}}
    first, second = (make_stack(config(fakes, [*KEYS, CAPPED_KEY], state=state)) for _ in range(2))
    for stack in (first, second):
        until_fast(lambda stack=stack: chat(stack, TEAM))  # type: ignore[misc]
        assert "fast chat fa-model capped authorization" in stack.fast_routes()  # the model's routes take every key
    charged = [chat(first, CAPPED, rid=f"capped-{i}") for i in range(4)]  # $0.3 a request: $1.2, spent
    assert all(a.status_code == 200 and a.headers["x-extproc-route"] == "direct; fast" for a in charged)
    for i in range(4):
        first.usage_record(f"capped-{i}")  # charged as its record is written (from Envoy's answers log)
    # Every replica reads the shared spend and drops the key's fast routes, Envoy reloads, and from then on the
    # key takes the full path, which refuses it: what it spent meanwhile is the overshoot (docs/fast-path.md).
    for stack in (first, second):
        eventually(lambda stack=stack: not [n for n in stack.fast_routes() if " capped " in n],  # type: ignore
                   "the spent key's routes are gone")
        refusal = chat(stack, CAPPED)
        assert refusal.status_code == 429 and refusal.json()["error"]["code"] == "budget_exceeded"
        assert int(refusal.headers["retry-after"]) > 0
        assert chat(stack, TEAM).headers["x-extproc-route"] == "direct; fast"  # the other keys stay fast
    served = [r for r in first.usage_records() if r["client"] == "capped"]
    assert sum(r["cost_usd"] for r in served) >= 1 and any(r["route"] == "direct; fast" for r in served)
