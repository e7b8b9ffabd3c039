"""The fast path through the real stack: once a model has been asked for, Envoy serves its plain requests by
itself (no processor message), with the same credential, learning and failover as the full path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
COOLING = 5  # s a 429's retry-after cools fa here: the test watches the fast route go and come back within it
KEY_A, KEY_B = "k-fast-primary", "k-fast-backup"


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({
        "discovery": False, "strategy": "none",  # accounting on, as by default
        "providers": {"fa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": KEY_A},
                      "fb": {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"}, "api_key": KEY_B},
                      "fm": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                             "auth": "x-api-key", "api_key": "k-fast-anthropic",
                             "headers": {"anthropic-version": "2023-06-01"}}},
        "models": [{"id": "fa-model", "provider": "fa", "context_window": 100000, "input_price": 2.0,
                    "output_price": 8.0, "cache_read_price": 0.5,
                    "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]},
                   {"id": "fc-model", "provider": "fa", "context_window": 100000,  # asked for by one test only
                    "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]},
                   {"id": "fb-model", "provider": "fb", "context_window": 100000,
                    "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]},
                   {"id": "fm-model", "provider": "fm", "context_window": 100000, "input_price": 3.0,
                    "output_price": 15.0, "cache_read_price": 0.3, "cache_write_price": 3.75,
                    "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]}],
        "fallbacks": {"fa-model": ["fb-model"]},
        "translation": False,  # no answer is translated: an Anthropic client's history holds Anthropic's own
        "health": {"backoff_base": 0.2, "backoff_max": 0.2}})


def routed(stack: Stack) -> int:
    """How many requests the processor has routed (each logs one line)."""
    return stack.logs().count('"message":"route rid=')


def until_fast(post: Callable[[], httpx.Response]) -> httpx.Response:
    """The first answer that went fast: requests of a model the full path served once go fast once the routes
    file Envoy watches is rewritten (at most a second later, longer while a reload waits)."""
    def fast() -> httpx.Response | None:
        answer = post()
        return answer if answer.headers.get("x-extproc-route", "").endswith("fast") else None
    return eventually(fast, "a request goes fast")


def chat(stack: Stack, model: str = "fa-model", rid: str | None = None, **extra: Any) -> httpx.Response:
    return httpx.post(stack.url + "/v1/chat/completions", json={"model": model, "messages": CHAT, **extra},
                      headers={"authorization": "Bearer client-own-key", "x-extproc-provider": "fb",
                               "x-envoy-max-retries": "7", "x-extproc-plan": "forged",
                               **({"x-request-id": rid} if rid else {})})


def messages(stack: Stack, rid: str | None = None) -> httpx.Response:
    return httpx.post(stack.url + "/v1/messages", json={"model": "fm-model", "max_tokens": 5, "messages": CHAT},
                      headers={"x-api-key": "client-own-key", **({"x-request-id": rid} if rid else {})})


def test_a_model_asked_for_once_is_then_served_by_envoy_alone_with_its_credential(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    first = chat(stack)
    assert first.status_code == 200 and first.headers["x-extproc-route"] == "direct"
    fast = until_fast(lambda: chat(stack))
    assert fast.status_code == 200 and fast.json()["choices"][0]["message"]["content"] == "hello from fa-model"
    assert (fast.headers["x-extproc-provider"], fast.headers["x-extproc-model"]) == ("fa", "fa-model")
    before = routed(stack)
    for _ in range(5):
        assert chat(stack).headers["x-extproc-route"] == "direct; fast"
    assert routed(stack) == before  # not one message to the processor
    sent = fakes["openai"].requests[-1]
    assert sent.headers["authorization"] == f"Bearer {KEY_A}"  # the client's own key never goes on
    assert json.loads(sent.body) == {"model": "fa-model", "messages": CHAT}  # the body as the client sent it
    ours = {h for h in sent.headers if h.startswith("x-extproc")}
    assert ours == {h for h in fakes["openai"].requests[0].headers if h.startswith("x-extproc")}  # as the full path
    assert not fakes["groq"].requests  # a client's forged provider header steered nothing


def test_what_needs_python_still_takes_the_full_path(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack))
    before = routed(stack)
    streamed = chat(stack, stream=True)
    assert streamed.status_code == 200 and streamed.headers["x-extproc-route"] == "direct"
    unknown = chat(stack, model="no-such-model")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    big = chat(stack, filler="x" * 140_000)  # past the size the fast plan was made for
    assert big.status_code == 200 and big.headers["x-extproc-route"] == "direct"
    assert routed(stack) == before + 2  # the stream and the big body (the 404 is refused, not routed)


def test_a_429_on_the_fast_path_fails_over_in_the_same_request_and_the_route_follows_health(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack))
    fakes["openai"].script(429, {"retry-after": str(COOLING)})
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="fa-model", messages=CHAT)  # type: ignore[arg-type]
    assert raw.headers["x-extproc-attempts"] == "2" and raw.headers["x-extproc-model"] == "fb-model"
    assert raw.parse().choices[0].message.content == "hello from fb-model"
    assert fakes["groq"].requests[-1].headers["authorization"] == f"Bearer {KEY_B}"

    def on_the_backup_at_once() -> bool:
        answer = chat(stack)
        return (answer.headers["x-extproc-model"], answer.headers["x-extproc-attempts"]) == ("fb-model", "1")

    # Learned from the access log: the cooling credential's route is withdrawn (seen well within the cooldown)…
    eventually(on_the_backup_at_once, "requests stop going to the cooling credential")
    recovered = until_fast(lambda: chat(stack))  # …and published again once the cooldown ends
    assert recovered.headers["x-extproc-model"] == "fa-model"


CHAT_ANSWER = {"id": "chatcmpl-u", "object": "chat.completion", "created": 1, "model": "fa-model",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                         "prompt_tokens_details": {"cached_tokens": 100},
                         "completion_tokens_details": {"reasoning_tokens": 12}}}
MESSAGES_ANSWER = {"id": "msg_u", "type": "message", "role": "assistant", "model": "fm-model",
                   "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                   "usage": {"input_tokens": 7, "output_tokens": 9, "cache_read_input_tokens": 50,
                             "cache_creation_input_tokens": 20}}
SERVED = ("served_model", "provider", "credential", "attempts", "status", "outcome", "streamed", "input_tokens",
          "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "api")


def test_each_answer_envoy_serves_alone_gets_the_usage_record_the_full_path_would_write(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack))
    fakes["openai"].script(200, body=json.dumps(CHAT_ANSWER).encode(), times=2)
    full = chat(stack, model="fa/fa-model", rid="usage-full")  # a qualified name: the full path reads it
    fast = chat(stack, rid="usage-fast")
    assert fast.headers["x-extproc-route"] == "direct; fast" and fast.json() == CHAT_ANSWER
    assert "x-extproc-attempt" not in fast.headers  # who served it is for the record, not the client
    a, b = stack.usage_record("usage-full"), stack.usage_record("usage-fast")
    assert (b["requested_model"], b["route"], b["client"]) == ("fa-model", "direct; fast", None)
    assert {k: b[k] for k in SERVED} == {k: a[k] for k in SERVED}
    assert (b["input_tokens"], b["cache_read_tokens"], b["output_tokens"], b["reasoning_tokens"]) == (20, 100, 30, 12)
    assert b["cost_usd"] == pytest.approx((20 * 2.0 + 100 * 0.5 + 30 * 8.0) / 1e6)
    assert b["latency_ms"] >= b["ttft_ms"] > 0
    assert full.status_code == 200
    until_fast(lambda: messages(stack))
    # A JSON answer whose type carries a parameter is read as well.
    fakes["anthropic"].script(200, {"content-type": "application/json; charset=utf-8"},
                              json.dumps(MESSAGES_ANSWER).encode())
    assert messages(stack, rid="usage-fast-messages").headers["x-extproc-route"] == "direct; fast"
    m = stack.usage_record("usage-fast-messages")
    assert (m["api"], m["input_tokens"], m["output_tokens"], m["cache_read_tokens"], m["cache_write_tokens"]) == \
        ("anthropic", 7, 9, 50, 20)
    assert m["cost_usd"] == pytest.approx((7 * 3.0 + 9 * 15.0 + 50 * 0.3 + 20 * 3.75) / 1e6)


def test_a_fast_answer_that_failed_over_is_recorded_as_served_by_the_fallback(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack))
    fakes["openai"].script(429, {"retry-after": "1"})
    answer = chat(stack, rid="usage-failover")
    assert answer.status_code == 200 and answer.headers["x-extproc-attempts"] == "2"
    record = stack.usage_record("usage-failover")
    assert (record["served_model"], record["provider"], record["credential"], record["attempts"]) == \
        ("fb-model", "fb", "fb:key1", 2)
    assert record["route"] == answer.headers["x-extproc-route"] and record["requested_model"] == "fa-model"


def test_a_client_cannot_steer_the_fast_path_with_envoys_or_our_headers(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: chat(stack))
    fakes["openai"].script(503, times=3)
    forged = {"x-forwarded-for": "10.0.0.1", "x-envoy-upstream-rq-per-try-timeout-ms": "1",
              "x-envoy-max-retries": "9", "x-envoy-retry-on": "5xx", "x-extproc-endpoints": "nowhere:1",
              "x-extproc-attempt": "1 fb:key1 fb/fb-model chat 0 1", "authorization": "Bearer client-own-key"}
    answer = httpx.post(stack.url + "/v1/chat/completions", json={"model": "fa-model", "messages": CHAT},
                        headers=forged)
    assert answer.status_code == 200 and answer.headers["x-extproc-attempts"] == "2"  # the plan's two, not ten
    assert answer.headers["x-extproc-model"] == "fb-model"
    assert len([r for r in fakes["openai"].requests if r.path == "/v1/chat/completions"]) >= 1
    fakes["openai"].reset()


def test_a_name_the_full_path_would_rewrite_never_goes_fast(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    served = {"fa": fakes["openai"], "fb": fakes["groq"]}

    def qualified() -> None:  # a qualified name: the full path sends the provider its own id
        answer = chat(stack, model="fa/fa-model")
        assert answer.status_code == 200 and not answer.headers["x-extproc-route"].endswith("fast")
        sent = served[answer.headers["x-extproc-provider"]].requests[-1]
        assert json.loads(sent.body)["model"] == answer.headers["x-extproc-model"]

    qualified()
    # A model first asked for after it goes fast: the routes were written again since the qualified name was seen.
    until_fast(lambda: chat(stack, model="fc-model"))
    for _ in range(3):
        qualified()
