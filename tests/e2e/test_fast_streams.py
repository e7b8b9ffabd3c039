"""Streams on the fast path: Envoy sends a stream that nothing must rewrite to its provider directly (no relay),
reads its usage from the answer's two ends, and a stream cut midway reaches the client as a reset its SDK raises,
learned once as what it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from extproc.fast.routes import FAST_SUFFIX
from tests.conftest import Stack
from tests.fakes import FakeProvider, chat_stream, messages_stream
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
SSE = {"content-type": "text/event-stream"}
EVERY = ["tools", "vision", "reasoning", "structured_output", "streaming"]
# A stream cut midway cools its model on its credential: each test streams a model of its own.
MODELS = ("sc-cut", "sc-plain", "sm-cut", "sm-long")


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({
        "discovery": False, "strategy": "none", "translation": False,  # accounting on, as by default
        "providers": {"sc": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": "k-sc"},
                      "sm": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                             "auth": "x-api-key", "api_key": "k-sm", "headers": {"anthropic-version": "2023-06-01"}}},
        "models": [{"id": m, "provider": m[:2], "context_window": 100000, "input_price": 1.0, "output_price": 2.0,
                    "cache_read_price": 0.5, "capabilities": EVERY} for m in MODELS]})


def stream(stack: Stack, model: str, rid: str, **extra: Any) -> httpx.Response:
    """A stream as a client reads it, whole."""
    path, body = ("/v1/messages", {"max_tokens": 5}) if model.startswith("sm") else ("/v1/chat/completions", {})
    with httpx.stream("POST", stack.url + path, json={"model": model, "messages": CHAT, "stream": True, **body,
                                                      **extra}, headers={"x-request-id": rid}) as answer:
        answer.read()
    return answer


def warmed(stack: Stack, model: str, **extra: Any) -> None:
    """Until the model's streams go fast: the first takes the full path (the relay), which publishes its route."""
    count = iter(range(1000))
    eventually(lambda: stream(stack, model, f"warm-{model}-{next(count)}", **extra).headers.get(
        "x-extproc-route", "").endswith(FAST_SUFFIX), f"{model}'s streams go fast")


def learned_once(stack: Stack, rid: str, model: str) -> None:
    """The cut is in the model's state, and learned from one access-log entry only (the attempt's): the request's
    record, written from the answers log, is in as well, so a second lesson would be too."""
    assert stack.unavailable_card(model)["unavailable_reason"].endswith(": answer cut off")
    record = stack.usage_record(rid)
    assert (record["status"], record["route"], record["streamed"]) == (502, "direct" + FAST_SUFFIX, True)
    assert stack.logs().count(f"upstream rid={rid} ") == 1


def test_a_fast_stream_cut_midway_raises_in_the_openai_sdk_and_health_learns_the_cut(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    warmed(stack, "sc-cut", stream_options={"include_usage": True})
    fakes["openai"].reset()  # what the warm-up sent is not this request's
    fakes["openai"].script(200, SSE, chat_stream("sc-cut", usage=True), cut_after=2)
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    words = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="sc-cut", messages=CHAT, stream=True,  # type: ignore[arg-type]
                                                    stream_options={"include_usage": True},
                                                    extra_headers={"x-request-id": "cut-openai"}):
            words.append(chunk.choices[0].delta.content)
    assert words == ["hello", " from"]  # what came before the cut, and no end: the SDK raised
    (seen,) = fakes["openai"].wait_for(1)
    assert "x-extproc-api" in seen.headers  # sent on by Envoy itself: the relay, which calls on its own, drops it
    learned_once(stack, "cut-openai", "sc-cut")


def test_a_fast_stream_cut_midway_raises_in_the_anthropic_sdk_and_health_learns_the_cut(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    warmed(stack, "sm-cut")
    fakes["anthropic"].script(200, SSE, messages_stream("sm-cut"), cut_after=3)
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    seen = []
    with pytest.raises(anthropic.APIConnectionError):
        for event in client.messages.create(model="sm-cut", max_tokens=5, messages=CHAT, stream=True,  # type: ignore[arg-type]
                                            extra_headers={"x-request-id": "cut-anthropic"}):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    learned_once(stack, "cut-anthropic", "sm-cut")


def test_a_long_fast_stream_is_recorded_with_the_usage_of_its_first_and_last_events(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """Only the answer's two ends are kept (4 KiB each): message_start's input and cache tokens in the first,
    the last message_delta's output tokens in the second, with 40 KiB of text between them."""
    warmed(stack, "sm-long")
    start = {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "sm-long", "content": [], "stop_reason": None,
        "usage": {"input_tokens": 30, "cache_read_input_tokens": 500, "output_tokens": 1}}}
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é" * 100}}] * 200
    events = [("message_start", start),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              *(("content_block_delta", d) for d in deltas),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 900}}),
              ("message_stop", {"type": "message_stop"})]
    # Written as UTF-8 (two bytes a character): where an end is cut, no character may be split.
    fakes["anthropic"].script(200, SSE, b"".join(
        f"event: {name}\ndata: {json.dumps(doc, ensure_ascii=False)}\n\n".encode() for name, doc in events))
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    with client.messages.stream(model="sm-long", max_tokens=1000, messages=CHAT,  # type: ignore[arg-type]
                                extra_headers={"x-request-id": "long-fast"}) as answer:
        text = answer.get_final_text()
        route = answer.response.headers["x-extproc-route"]
    assert route == "direct" + FAST_SUFFIX and text == "é" * 20000
    record = stack.usage_record("long-fast")
    assert (record["input_tokens"], record["cache_read_tokens"], record["output_tokens"], record["streamed"]) == \
        (30, 500, 900, True)
    assert record["cost_usd"] == pytest.approx((30 * 1.0 + 500 * 0.5 + 900 * 2.0) / 1e6)


def test_a_chat_stream_that_did_not_ask_for_its_usage_stays_on_the_full_path(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """The full path asks the provider for the usage and keeps it from the client; the fast path cannot change
    the body, so with accounting only a chat stream that asked for its usage itself goes fast."""
    warmed(stack, "sc-plain", stream_options={"include_usage": True})
    fakes["openai"].reset()
    answer = stream(stack, "sc-plain", "plain-stream")
    assert answer.headers["x-extproc-route"] == "direct"  # the full path, through the relay
    assert b'"usage": {' not in answer.content  # the usage chunk it did not ask for is kept from it
    (seen,) = fakes["openai"].wait_for(1)
    assert seen.json()["stream_options"] == {"include_usage": True}
    record = stack.usage_record("plain-stream")
    assert (record["input_tokens"], record["output_tokens"], record["route"]) == (11, 3, "direct")
