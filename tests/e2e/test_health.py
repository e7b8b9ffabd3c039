"""Upstream responses teach the registry: cooldowns, suspensions, recovery — seen by the next request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack, provider_config
from tests.fakes import FakeProvider

CHAT = [{"role": "user", "content": "hi"}]


def _model(model_id: str, provider: str, price: float) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "input_price": price,
            "output_price": price * 4, "capabilities": ["tools", "streaming"]}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_stack({
        "providers": provider_config(fakes),
        "models": [_model("primary-a", "openai", 1.0), _model("backup-a", "groq", 1.0),
                   _model("primary-b", "openai", 2.0), _model("backup-b", "mistral", 2.0),
                   _model("solo", "anthropic", 3.0)],
        "fallbacks": {"primary-a": ["backup-a"], "primary-b": ["backup-b"]},
        "strategy": "none",
        "health": {"auth_suspension": 600},
    })


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client", max_retries=0)


def test_429_with_retry_after_cools_down_then_recovers(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].script(429, {"retry-after": "2"})
    with pytest.raises(openai.RateLimitError):
        oa.chat.completions.create(model="primary-a", messages=CHAT)
    cooled_at = time.monotonic()

    raw = oa.chat.completions.with_raw_response.create(model="primary-a", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "backup-a"
    assert raw.headers["x-extproc-route"] == "fallback:chain"
    assert [r.json()["model"] for r in fakes["groq"].requests] == ["backup-a"]

    time.sleep(max(0.0, 2.2 - (time.monotonic() - cooled_at)))
    raw = oa.chat.completions.with_raw_response.create(model="primary-a", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "primary-a"
    assert len(fakes["openai"].requests) == 2


def test_401_suspends_the_credential_and_requests_fall_back(
        oa: openai.OpenAI, fakes: dict[str, FakeProvider], stack: Stack) -> None:
    fakes["openai"].script(401)
    with pytest.raises(openai.AuthenticationError):
        oa.chat.completions.create(model="primary-b", messages=CHAT)
    for _ in range(2):
        raw = oa.chat.completions.with_raw_response.create(model="primary-b", messages=CHAT)
        assert raw.headers["x-extproc-model"] == "backup-b"
    assert len(fakes["openai"].requests) == 1
    models = {m["id"]: m for m in httpx.get(stack.url + "/v1/models").json()["data"]}
    assert models["primary-b"]["available"] is False
    assert "suspended" in models["primary-b"]["unavailable_reason"]
    assert "401" in models["primary-b"]["unavailable_reason"]


def test_nothing_available_is_503_with_retry_after(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    fakes["anthropic"].script(429, {"retry-after": "30"})
    body = {"model": "solo", "max_tokens": 5, "messages": CHAT}
    first = httpx.post(stack.url + "/v1/messages", json=body)
    assert first.status_code == 429
    second = httpx.post(stack.url + "/v1/messages", json=body)
    assert second.status_code == 503
    assert 28 <= int(second.headers["retry-after"]) <= 30
    assert second.json()["type"] == "error"
    assert len(fakes["anthropic"].requests) == 1


def test_server_error_cools_down_briefly(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    fakes["groq"].script(502)
    with pytest.raises(openai.InternalServerError):
        oa.chat.completions.create(model="backup-a", messages=CHAT)
    with pytest.raises(openai.APIStatusError) as caught:
        oa.chat.completions.create(model="backup-a", messages=CHAT)
    assert caught.value.status_code == 503
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 5
    assert len(fakes["groq"].requests) == 1
