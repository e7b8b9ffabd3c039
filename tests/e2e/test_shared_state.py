"""Two gateways sharing health through a real redis-server: what one learns, the other routes by."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import STATE_KEY, RedisServer, Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "capabilities": ["tools", "streaming"]}


def test_a_429_seen_by_one_gateway_makes_the_other_route_around_it(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = {
        "discovery": False, "strategy": "none",
        "state": {"redis": {"url": redis_server.url, "prefix": f"e2e{time.monotonic_ns()}:", "key": STATE_KEY}},
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
    second.unavailable_card("shared-a-model")  # the other gateway learns the cooldown (through Redis)
    other = openai.OpenAI(base_url=second.url + "/v1", api_key="unused", max_retries=0)
    raw = other.chat.completions.with_raw_response.create(model="shared-a-model", messages=CHAT)
    assert raw.headers["x-extproc-model"] == "shared-b-model" and raw.headers["x-extproc-attempts"] == "1"
    assert len(fakes["openai"].requests) == 1  # the cooled provider was not tried again by either


def test_a_client_keys_rpm_is_shared_by_the_gateways_sharing_redis(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    from tests.conftest import provider_config

    key = "shared-rpm-key-0123456789"
    config = {"providers": provider_config(fakes), "discovery": False,
              "clients": {"keys": [{"name": "team", "key": key, "rpm": 3}]},
              "state": {"redis": {"url": redis_server.url, "prefix": f"rpm{time.monotonic_ns()}:", "key": STATE_KEY}}}
    first, second = make_stack(config), make_stack(config)
    body = {"model": "gpt-5-mini", "messages": CHAT}
    headers = {"authorization": f"Bearer {key}"}
    statuses = [httpx.post(stack.url + "/v1/chat/completions", json=body, headers=headers).status_code
                for stack in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]
    assert len(fakes["openai"].requests) == 3


def _workers(pid: int) -> list[int]:
    """The worker processes of an `extproc up` (one killed a moment ago may vanish while they are listed)."""
    from pathlib import Path
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in children:
        try:
            if b"worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(int(child))
        except FileNotFoundError:
            continue
    return workers


def test_a_killed_processor_worker_is_replaced_and_traffic_resumes(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    import os
    import signal

    from tests.conftest import free_port_block, provider_config

    stack = make_stack({"providers": provider_config(fakes), "discovery": False,
                        "processor": {"address": "127.0.0.1", "port": free_port_block(4), "workers": 2},
                        "state": {"redis": {"url": redis_server.url, "prefix": f"w{time.monotonic_ns()}:",
                                                  "key": STATE_KEY}}})
    body = {"model": "gpt-5-mini", "messages": CHAT}
    assert all(httpx.post(stack.url + "/v1/chat/completions", json=body).status_code == 200 for _ in range(6))
    workers = _workers(stack.proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    eventually(lambda: len(now := _workers(stack.proc.pid)) == 2 and workers[0] not in now,
               "the killed worker is replaced")
    assert "processor worker 0 exited" in stack.logs()
    # Once the new worker serves (its start-up is a second or more of imports) and Envoy's health check sees it,
    # traffic resumes everywhere.
    eventually(lambda: all(httpx.post(stack.url + "/v1/chat/completions", json=body).status_code == 200
                           for _ in range(4)), "traffic resumes")


def test_a_stored_conversation_goes_on_at_the_account_that_holds_it_from_any_gateway(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = {
        "discovery": False, "strategy": "none",
        "state": {"redis": {"url": redis_server.url, "prefix": f"e2e{time.monotonic_ns()}:", "key": STATE_KEY}},
        "providers": {"held": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                               "api_keys": ["k-held-one", "k-held-two"]}},  # round-robin between two accounts
        "models": [_model("held-model", "held")]}
    first, second = make_stack(config), make_stack(config)
    one = openai.OpenAI(base_url=first.url + "/v1", api_key="unused", max_retries=0)
    other = openai.OpenAI(base_url=second.url + "/v1", api_key="unused", max_retries=0)
    seen = fakes["openai"].requests
    answer = {"id": "resp_held_A", "object": "response", "created_at": 1, "model": "held-model", "status": "completed",
              "output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    fakes["openai"].script(200, body=json.dumps(answer).encode())
    one.responses.create(model="held-model", input="hi")
    holder = seen[-1].headers["authorization"]
    with one.responses.stream(model="held-model", input="hi") as events:  # a streamed answer (id resp_1)
        events.get_final_response()
    streamed_holder = seen[-1].headers["authorization"]
    for _ in range(3):  # round-robin alone would alternate between the accounts
        other.responses.create(model="held-model", input="more", previous_response_id="resp_held_A")
        assert seen[-1].headers["authorization"] == holder
        one.responses.create(model="held-model", input="more", previous_response_id="resp_1")
        assert seen[-1].headers["authorization"] == streamed_holder
    fakes["openai"].script(429, {"retry-after": "60"})  # the holder's window runs out
    with pytest.raises(openai.RateLimitError):
        one.responses.create(model="held-model", input="more", previous_response_id="resp_held_A")

    def refused() -> bool:
        sent = len(seen)
        try:
            other.responses.create(model="held-model", input="more", previous_response_id="resp_held_A")
        except openai.APIStatusError as refusal:
            assert refusal.status_code == 503 and "send the whole conversation" in refusal.message
            assert len(seen) == sent  # refused before anything went upstream: never to the account that lacks it
            return True
        assert seen[-1].headers["authorization"] == holder  # not learned yet: still only the holder
        return False

    # The other gateway learns the cooldown through Redis, and then refuses clearly.
    eventually(refused, "the other gateway refuses a held conversation while its holder cools")
