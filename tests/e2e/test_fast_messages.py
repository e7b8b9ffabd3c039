"""Anthropic Messages on the fast path in the default config (translation on, other providers' models about):
Envoy finds, by one byte search, a history holding thinking another provider wrote and leaves that body to the
full path, which takes it out; every other Messages request, whole or streamed, with Claude Code's `?beta=true`
or without, goes fast once its model was asked for."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from extproc.translate.ir import TRANSLATED
from tests.conftest import Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

TEAM = "messages-team-key-0123456789"
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    model = {"context_window": 100000, "capabilities": ["tools", "vision", "reasoning", "structured_output",
                                                         "streaming"]}
    return make_module_stack({  # translation on, as by default: oa-model could answer an Anthropic client
        "discovery": False, "strategy": "none",
        "providers": {"oa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": "k-oa"},
                      "an": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                             "auth": "x-api-key", "api_key": "k-an-messages",
                             "headers": {"anthropic-version": "2023-06-01"}}},
        "models": [{"id": "oa-model", "provider": "oa", **model}, {"id": "an-model", "provider": "an", **model}],
        "clients": {"keys": [{"name": "team", "key": TEAM}]}})


def post(stack: Stack, body: dict[str, Any], query: str = "", rid: str | None = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/messages{query}", json={"model": "an-model", "max_tokens": 5, **body},
                      headers={"x-api-key": TEAM, "anthropic-version": "2023-06-01",
                               **({"x-request-id": rid} if rid else {})})


def until_fast(send: Callable[[], httpx.Response]) -> httpx.Response:
    def fast() -> httpx.Response | None:
        answer = send()
        return answer if answer.headers.get("x-extproc-route", "").endswith("; fast") else None
    return eventually(fast, "a request goes fast")


def test_messages_whole_and_streamed_go_fast_with_translation_on(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: post(stack, {"messages": CHAT}))
    sdk = anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0)
    raw = sdk.messages.with_raw_response.create(model="an-model", max_tokens=5, messages=CHAT)  # type: ignore
    assert raw.headers["x-extproc-route"] == "direct; fast" and raw.parse().content
    until_fast(lambda: post(stack, {"messages": CHAT, "stream": True}, "?beta=true"))
    streamed = post(stack, {"messages": CHAT, "stream": True}, "?beta=true", rid="messages-fast-stream")
    assert streamed.headers["x-extproc-route"] == "direct; fast" and "message_stop" in streamed.text
    sent = fakes["anthropic"].requests[-1]
    assert sent.path == "/v1/messages?beta=true"  # Claude Code's query, passed on as it came
    assert sent.headers["x-api-key"] == "k-an-messages" and TEAM not in json.dumps(sent.headers)
    record = stack.usage_record("messages-fast-stream")
    assert (record["client"], record["route"], record["streamed"]) == ("team", "direct; fast", True)


def test_a_history_with_translated_thinking_takes_the_full_path_which_leaves_it_out(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: post(stack, {"messages": CHAT}))
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": [
                   {"type": "thinking", "thinking": "another provider's", "signature": TRANSLATED},
                   {"type": "text", "text": "hello"}]},
               {"role": "user", "content": "and now?"}]
    for query in ("", "?beta=true"):
        answer = post(stack, {"messages": history}, query)
        assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct"  # the processor's
        sent = fakes["anthropic"].requests[-1].json()
        assert [b["type"] for b in sent["messages"][1]["content"]] == ["text"]
    # Any other query is not the fast path's: a client key in it is read by the processor.
    other = post(stack, {"messages": CHAT}, "?beta=true&x=1")
    assert other.status_code == 200 and other.headers["x-extproc-route"] == "direct"
