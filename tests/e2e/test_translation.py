"""Translation through the real stack: a client of one API served by a provider of another, with the SDKs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import Stack
from tests.fakes import FakeProvider

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"discovery": False, "strategy": "none", "providers": {
        "oa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": "k-oa-translate"},
        "an": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"}, "auth": "x-api-key",
               "api_key": "k-an-translate", "headers": {"anthropic-version": "2023-06-01"}},
        "gm": {"base_url": fakes["gemini"].base_url, "apis": {"gemini": ""}, "auth": "x-goog-api-key",
               "api_key": "k-gm-translate"}},
        "models": [{"id": "oa-model", "provider": "oa", "context_window": 100000,
                    "capabilities": ["tools", "streaming", "vision"]},
                   {"id": "an-model", "provider": "an", "context_window": 100000,
                    "capabilities": ["tools", "streaming", "vision"]},
                   {"id": "gm-model", "provider": "gm", "context_window": 100000,
                    "capabilities": ["tools", "streaming", "vision"]}]})


def test_tool_calls_round_trip_between_anthropic_clients_and_openai_providers(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    call = {"id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "oa-model", "choices": [{
        "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5}}
    fakes["openai"].script(200, body=json.dumps(call).encode())
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    tools = [{"name": "weather", "description": "Weather now", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    first = an.messages.create(model="oa-model", max_tokens=50, messages=CHAT, tools=tools)  # type: ignore[arg-type]
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use"
    assert (use.id, use.name, use.input) == ("call_7", "weather", {"city": "Paris"})  # type: ignore[union-attr]
    an.messages.create(model="oa-model", max_tokens=50, tools=tools, messages=[  # type: ignore[arg-type]
        *CHAT, {"role": "assistant", "content": [{"type": "tool_use", "id": "call_7", "name": "weather",
                                                  "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_7", "content": "18C"}]}])
    sent = fakes["openai"].requests[-1].json()
    assert sent["tools"][0]["function"]["name"] == "weather"
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_7"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_7", "content": "18C"}


def test_a_provider_error_comes_back_in_the_clients_envelope(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].script(400, body=b'{"error": {"message": "bad thing", "type": "invalid_request_error"}}')
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as failed:
        an.messages.create(model="oa-model", max_tokens=5, messages=CHAT)
    assert isinstance(failed.value.body, dict) and failed.value.body["type"] == "error"
    assert failed.value.body["error"]["message"] == "bad thing"


def test_what_the_target_cannot_express_is_refused_before_anything_goes_upstream(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    before = len(fakes["openai"].requests)
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        an.messages.create(model="oa-model", max_tokens=5, messages=CHAT,
                           tools=[{"type": "web_search_20250305", "name": "web_search"}])  # type: ignore[list-item]
    assert "web_search" in str(refused.value) and len(fakes["openai"].requests) == before


def test_google_genai_is_served_by_an_openai_provider_whole_and_streamed(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    from google import genai
    from google.genai import types as genai_types

    gm = genai.Client(api_key="unused", http_options=genai_types.HttpOptions(base_url=stack.url))
    answer = gm.models.generate_content(model="oa-model", contents="hi", config=genai_types.GenerateContentConfig(
        system_instruction="Be brief.", max_output_tokens=30))
    assert answer.text == "hello from oa-model"
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count == 3
    sent = fakes["openai"].requests[-1].json()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["max_tokens"] == 30
    streamed = "".join(c.text or "" for c in gm.models.generate_content_stream(model="oa-model", contents="hi"))
    assert streamed == "hello from oa-model"
    assert fakes["openai"].requests[-1].json()["stream"] is True


WEATHER = [{"name": "weather", "description": "Weather now", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}]


def test_the_anthropic_sdk_is_served_by_a_gemini_provider_whole_streamed_and_with_tools(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    raw = an.messages.with_raw_response.create(model="gm-model", max_tokens=50, system="Be brief.", messages=CHAT)
    assert raw.parse().content[0].text == "hello from gm-model"  # type: ignore[union-attr]
    assert "translated messages->gemini" in raw.headers["x-extproc-route"]
    sent = fakes["gemini"].requests[-1]
    assert sent.path == "/v1beta/models/gm-model:generateContent" and sent.headers["x-goog-api-key"] == "k-gm-translate"
    assert sent.json()["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    with an.messages.stream(model="gm-model", max_tokens=50, messages=CHAT) as events:
        assert "".join(events.text_stream) == "hello from gm-model"
        assert events.get_final_message().usage.output_tokens == 4
    assert fakes["gemini"].requests[-1].path == "/v1beta/models/gm-model:streamGenerateContent?alt=sse"
    call = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5}}
    fakes["gemini"].script(200, body=json.dumps(call).encode())
    first = an.messages.create(model="gm-model", max_tokens=50, messages=CHAT, tools=WEATHER)  # type: ignore[arg-type]
    use = first.content[0]
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.input == {"city": "Paris"}
    an.messages.create(model="gm-model", max_tokens=50, tools=WEATHER, messages=[  # type: ignore[arg-type]
        *CHAT, {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": "weather",
                                                  "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}])
    contents = fakes["gemini"].requests[-1].json()["contents"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "weather"
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "weather"  # Gemini names what a result answers


@pytest.mark.parametrize("model", ["an-model", "oa-model", "gm-model"])
def test_a_responses_client_streams_from_a_provider_of_any_other_api(
        stack: Stack, fakes: dict[str, FakeProvider], model: str) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    with oa.responses.stream(model=model, input="hi", instructions="Be brief.") as events:
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        final = events.get_final_response()
    assert "".join(deltas) == final.output_text == f"hello from {model}"
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens > 0
    whole = oa.responses.create(model=model, input="hi")
    assert whole.output_text == f"hello from {model}"


def test_thinking_another_provider_wrote_never_reaches_anthropic_when_the_conversation_moves_back(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    reasoned = {"id": "chatcmpl-r", "object": "chat.completion", "created": 1, "model": "oa-model", "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "reasoning_content": "Let me see.",
                                                          "content": "It is 4."}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6}}
    fakes["openai"].script(200, body=json.dumps(reasoned).encode())
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    first = an.messages.create(model="oa-model", max_tokens=50, messages=[{"role": "user", "content": "2+2?"}])
    assert [b.type for b in first.content] == ["thinking", "text"]
    history = [{"role": "user", "content": "2+2?"},
               {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": "And 3+3?"}]
    second = an.messages.create(model="an-model", max_tokens=50, messages=history)  # type: ignore[arg-type]
    assert second.content[0].text == "hello from an-model"  # type: ignore[union-attr]
    sent = fakes["anthropic"].requests[-1].json()["messages"]
    assert sent[1]["content"] == [{"type": "text", "text": "It is 4."}]  # the thinking Anthropic never made: left out
    assert int(fakes["anthropic"].requests[-1].headers["content-length"]) == len(fakes["anthropic"].requests[-1].body)


def test_token_counting_is_never_translated_into_a_completion(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    before = len(fakes["openai"].requests)
    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        an.messages.count_tokens(model="oa-model", messages=CHAT)  # type: ignore[arg-type]
    assert "token counting" in str(refused.value) and len(fakes["openai"].requests) == before
