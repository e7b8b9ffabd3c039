"""A stream that fails after its first byte ends with an error event in the client's own API, which each
official SDK raises: through real Envoy, the processor's stream relay, and a provider that drops the
connection mid-answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import Stack, provider_config
from tests.fakes import FakeProvider, chat_stream

SSE = {"content-type": "text/event-stream"}
# A stream cut midway cools its model's credential for a while (health.server_error_cooldown), and no other
# model serves it: each test streams a model of its own.


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes), "discovery": False, "failover": {"attempts": 1}})


def _events(*events: tuple[str | None, dict[str, Any]]) -> bytes:
    return b"".join((f"event: {name}\n".encode() if name else b"") + b"data: " + json.dumps(doc).encode() + b"\n\n"
                    for name, doc in events)


def test_anthropic_messages_stream_ends_with_an_error_event(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-5-5", "content": [],
               "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}
    fakes["anthropic"].script(200, SSE, _events(
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "hel"}}),
        ("message_stop", {"type": "message_stop"})), cut_after=3)
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    seen = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        for event in client.messages.create(model="claude-haiku-5-5", max_tokens=5, stream=True,
                                            messages=[{"role": "user", "content": "hi"}]):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    assert "stream failed before the answer was complete" in str(failed.value)
    # health learns it as what it was: the provider's answer was cut off
    assert stack.unavailable_card("claude-haiku-5-5")["unavailable_reason"].endswith(": answer cut off")


def test_openai_chat_stream_ends_with_an_error_chunk(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].script(200, SSE, chat_stream("gpt-5-mini"), cut_after=2)
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    words = []
    with pytest.raises(openai.APIError, match="stream failed before the answer was complete"):
        for chunk in client.chat.completions.create(model="gpt-5-mini", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            words.append(chunk.choices[0].delta.content)
    assert words == ["hello", " from"]


def test_openai_responses_stream_ends_with_response_failed(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    created = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-4o-mini",
               "output": []}
    fakes["openai"].script(200, SSE, _events(
        ("response.created", {"type": "response.created", "response": created, "sequence_number": 0}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0,
                                        "content_index": 0, "delta": "hel", "sequence_number": 1}),
        ("response.completed", {"type": "response.completed", "response": {**created, "status": "completed"},
                                "sequence_number": 2})), cut_after=2)
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert [e.type for e in events] == ["response.created", "response.output_text.delta", "response.failed"]
    failed = events[-1]
    assert failed.response.status == "failed" and failed.response.error is not None
    assert failed.response.error.code == "upstream_stream_failed"


def test_gemini_stream_ends_with_an_error_object(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hel"}]}, "index": 0}],
             "modelVersion": "gemini-3.8-flash"}
    fakes["gemini"].script(200, SSE, _events((None, chunk), (None, chunk)), cut_after=1)
    client = genai.Client(api_key="unused", http_options=genai_types.HttpOptions(base_url=stack.url))
    texts = []
    with pytest.raises(genai_errors.APIError) as failed:
        for part in client.models.generate_content_stream(model="gemini-3.8-flash", contents="hi"):
            texts.append(part.text)
    assert texts == ["hel"] and failed.value.code == 502


def test_the_relay_serves_our_envoy_only(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """`extproc up` shares a processor token with its Envoy: a request straight to the relay port is refused
    and never reaches a provider."""
    import httpx
    import yaml

    relay_port = yaml.safe_load(stack.config_path.read_text())["processor"]["relay_port"]
    response = httpx.post(f"http://127.0.0.1:{relay_port}/v1/chat/completions", json={"model": "gpt-5-mini"},
                          headers={"x-extproc-provider": "openai", "authorization": "Bearer stolen"})
    assert response.status_code == 403 and fakes["openai"].requests == []
