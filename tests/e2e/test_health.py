"""Upstream responses teach the registry: cooldowns, suspensions, recovery — seen by the next request."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]


def _model(model_id: str, provider: str, price: float) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "input_price": price,
            "output_price": price * 4, "capabilities": ["tools", "streaming"]}


# Health is learned per credential and model, and a 401 suspends a credential for every model. So that the tests
# pass in any order and alone on one stack, each test's models sit on providers of its own (each with its own key)
# pointed at the shared fakes: what one test teaches the registry no other test's request can meet.
LANES: dict[str, tuple[str, str, str]] = {  # provider: (fake it points at, client API it speaks, auth style)
    "ratelimit-openai": ("openai", "openai", "bearer"),
    "ratelimit-groq": ("groq", "openai", "bearer"),
    "revoked-openai": ("openai", "openai", "bearer"),
    "revoked-mistral": ("mistral", "openai", "bearer"),
    "exhausted-anthropic": ("anthropic", "anthropic", "x-api-key"),
    "flaky-groq": ("groq", "openai", "bearer"),
}


def _key(provider: str) -> str:
    return f"sk-{provider}-secret-{os.getpid()}"


def _keys_sent(fake: FakeProvider) -> list[str]:
    """Which lane's key each request the fake received carried."""
    sent = {f"Bearer {_key(name)}" if auth == "bearer" else _key(name): name for name, (_, _, auth) in LANES.items()}
    return [sent.get(r.headers.get("authorization") or r.headers.get("x-api-key", ""), "?") for r in fake.requests]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    stack = make_module_stack({
        "providers": {name: {"base_url": fakes[fake].base_url, "api_key": _key(name), "auth": auth,
                             "apis": {api: "/v1"}}
                      for name, (fake, api, auth) in LANES.items()},
        "models": [_model("ratelimit-primary", "ratelimit-openai", 1.0),
                   _model("ratelimit-backup", "ratelimit-groq", 1.0),
                   _model("revoked-primary", "revoked-openai", 2.0),
                   _model("revoked-backup", "revoked-mistral", 2.0),
                   _model("exhausted-solo", "exhausted-anthropic", 3.0),
                   _model("flaky-solo", "flaky-groq", 4.0)],
        "fallbacks": {"ratelimit-primary": ["ratelimit-backup"], "revoked-primary": ["revoked-backup"]},
        "strategy": "none",
        "fast_path": False,  # the full path, which learns before the next request is routed: a fast route is
        # withdrawn a moment after (test_fast_path watches it follow health)
        "health": {"auth_suspension": 600},
        "failover": {"attempts": 1},  # one attempt per request: these tests watch what the next request learned
    })
    yield stack
    logs = stack.logs()
    leaked = [name for name in LANES if _key(name) in logs]
    assert not leaked, f"keys of {leaked} appeared in the gateway's logs"


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client", max_retries=0)


def test_429_with_retry_after_cools_down_then_recovers(
        oa: openai.OpenAI, fakes: dict[str, FakeProvider], stack: Stack) -> None:
    fakes["openai"].script(429, {"retry-after": "5"})  # long enough to see, however loaded the machine
    with pytest.raises(openai.RateLimitError):
        oa.chat.completions.create(model="ratelimit-primary", messages=CHAT)
    assert "429" in stack.unavailable_card("ratelimit-primary")["unavailable_reason"]

    raw = oa.chat.completions.with_raw_response.create(model="ratelimit-primary", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "ratelimit-backup"
    assert raw.headers["x-extproc-route"] == "fallback:chain"
    assert [r.json()["model"] for r in fakes["groq"].requests] == ["ratelimit-backup"]

    # Once the cooldown is over (the card says so), the primary serves again.
    eventually(lambda: httpx.get(f"{stack.url}/v1/models/ratelimit-primary").json()["available"],
               "the cooldown ends")
    raw = oa.chat.completions.with_raw_response.create(model="ratelimit-primary", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "ratelimit-primary"
    assert _keys_sent(fakes["openai"]) == ["ratelimit-openai"] * 2
    assert _keys_sent(fakes["groq"]) == ["ratelimit-groq"]


def test_401_suspends_the_credential_and_requests_fall_back(
        oa: openai.OpenAI, fakes: dict[str, FakeProvider], stack: Stack) -> None:
    fakes["openai"].script(401)
    with pytest.raises(openai.AuthenticationError):
        oa.chat.completions.create(model="revoked-primary", messages=CHAT)
    stack.unavailable_card("revoked-primary")
    for _ in range(2):
        raw = oa.chat.completions.with_raw_response.create(model="revoked-primary", messages=CHAT)
        assert raw.headers["x-extproc-model"] == "revoked-backup"
    assert _keys_sent(fakes["openai"]) == ["revoked-openai"]
    assert _keys_sent(fakes["mistral"]) == ["revoked-mistral"] * 2
    models = {m["id"]: m for m in httpx.get(stack.url + "/v1/models").json()["data"]}
    assert models["revoked-primary"]["available"] is False
    assert "suspended" in models["revoked-primary"]["unavailable_reason"]
    assert "401" in models["revoked-primary"]["unavailable_reason"]


def test_nothing_available_is_503_with_retry_after(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    fakes["anthropic"].script(429, {"retry-after": "30"})
    body = {"model": "exhausted-solo", "max_tokens": 5, "messages": CHAT}
    first = httpx.post(stack.url + "/v1/messages", json=body)
    assert first.status_code == 429
    stack.unavailable_card("exhausted-solo")
    second = httpx.post(stack.url + "/v1/messages", json=body)
    assert second.status_code == 503
    assert 28 <= int(second.headers["retry-after"]) <= 30
    assert second.json()["type"] == "error"
    assert _keys_sent(fakes["anthropic"]) == ["exhausted-anthropic"]


def test_server_error_cools_down_briefly(oa: openai.OpenAI, fakes: dict[str, FakeProvider], stack: Stack) -> None:
    fakes["groq"].script(502)
    with pytest.raises(openai.InternalServerError):
        oa.chat.completions.create(model="flaky-solo", messages=CHAT)
    assert "502" in stack.unavailable_card("flaky-solo")["unavailable_reason"]
    with pytest.raises(openai.APIStatusError) as caught:
        oa.chat.completions.create(model="flaky-solo", messages=CHAT)
    assert caught.value.status_code == 503
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 5
    assert _keys_sent(fakes["groq"]) == ["flaky-groq"]
