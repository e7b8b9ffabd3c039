"""Two gateways sharing health through a real redis-server: what one learns, the other routes by."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai

from tests.conftest import RedisServer, Stack
from tests.fakes import FakeProvider

CHAT = [{"role": "user", "content": "hi"}]


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "capabilities": ["tools", "streaming"]}


def test_a_429_seen_by_one_gateway_makes_the_other_route_around_it_within_a_second(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    for fake in fakes.values():
        fake.reset()
    config = {
        "discovery": False, "strategy": "none",
        "state": {"redis": {"url": redis_server.url, "prefix": f"e2e{time.monotonic_ns()}:"}},
        "providers": {"shared-a": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                                   "api_key": "k-shared-a"},
                      "shared-b": {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"},
                                   "api_key": "k-shared-b"}},
        "models": [_model("shared-a-model", "shared-a"), _model("shared-b-model", "shared-b")],
        "fallbacks": {"shared-a-model": ["shared-b-model"]},
    }
    first, second = make_stack(config), make_stack(config)
    for stack in (first, second):
        assert httpx.get(stack.url + "/readyz").json()["shared_state"] == "redis: connected"
    fakes["openai"].script(429, {"retry-after": "60"})
    client = openai.OpenAI(base_url=first.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="shared-a-model", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "shared-b-model" and raw.headers["x-extproc-attempts"] == "2"
    answered = time.monotonic()
    while httpx.get(second.url + "/v1/models/shared-a-model").json()["available"]:
        assert time.monotonic() - answered < 1.0, "the other gateway did not learn the cooldown within a second"
        time.sleep(0.02)
    other = openai.OpenAI(base_url=second.url + "/v1", api_key="unused", max_retries=0)
    raw = other.chat.completions.with_raw_response.create(model="shared-a-model", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "shared-b-model" and raw.headers["x-extproc-attempts"] == "1"
    assert len(fakes["openai"].requests) == 1  # the cooled provider was not tried again by either
