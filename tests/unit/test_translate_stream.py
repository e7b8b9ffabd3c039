"""Streamed answers translated event by event, every provider stream into every client stream, split at every
byte: what the client's own stream says is what the provider's said."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.translate.anthropic import AnthropicReader, AnthropicWriter
from extproc.translate.gemini import GeminiReader, GeminiWriter
from extproc.translate.ir import (
    CUT,
    TRANSLATED,
    TRANSLATED_REASONING,
    CallDelta,
    CallStart,
    Event,
    Failed,
    Finish,
    Start,
    TextDelta,
    ThinkingDelta,
)
from extproc.translate.openai_chat import OpenAIChatReader, OpenAIChatWriter
from extproc.translate.responses import ResponsesReader, ResponsesWriter
from extproc.translate.stream import StreamTranslator
from extproc.translate.transform import CollectedAnswer, CollectedResponse


def sse(*docs: Any, named: bool = False) -> bytes:
    out = b""
    for doc in docs:
        head = f"event: {doc['type']}\n".encode() if named else b""
        out += head + b"data: " + (doc if isinstance(doc, bytes) else orjson.dumps(doc)) + b"\n\n"
    return out


OPENAI = sse(
    {"id": "c1", "model": "gpt-x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hé"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"content": "llo"}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"ci'}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}}]},
    {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"id": "c1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7}},
    b"[DONE]")
ANTHROPIC = sse(
    {"type": "message_start", "message": {"id": "m1", "model": "claude-x", "usage": {"input_tokens": 12,
                                                                                       "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hé"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "llo"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_1",
                                                                  "name": "weather", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city"'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ': "Paris"}'}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"}, named=True)
GEMINI = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hé"}]}}], "modelVersion": "gemini-x"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "llo"}]}}]},
    {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "weather",
                                                                              "args": {"city": "Paris"}}}]},
                     "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7}})
RESPONSES = sse(
    {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-x", "status": "in_progress"}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1"}},
    {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "hmm"},
    {"type": "response.output_item.added", "output_index": 1, "item": {"type": "message", "id": "m1"}},
    {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hé"},
    {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "llo"},
    {"type": "response.output_item.added", "output_index": 2, "item": {
        "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather", "arguments": ""}},
    {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": '{"city"'},
    {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": ': "Paris"}'},
    {"type": "response.output_item.done", "output_index": 2, "item": {"type": "function_call", "id": "fc_1"}},
    {"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "usage": {
        "input_tokens": 12, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 0}}}}, named=True)

PROVIDERS = {"openai": (OPENAI, OpenAIChatReader), "anthropic": (ANTHROPIC, AnthropicReader),
             "gemini": (GEMINI, GeminiReader), "responses": (RESPONSES, ResponsesReader)}
CLIENTS = {"openai": (lambda: OpenAIChatWriter(include_usage=True), OpenAIChatReader),
           "anthropic": (AnthropicWriter, AnthropicReader), "gemini": (GeminiWriter, GeminiReader),
           "responses": (ResponsesWriter, ResponsesReader)}


def said(events: list[Event]) -> dict[str, Any]:
    """What a stream says, whatever its framing: text, thinking, calls (name and arguments), how it ended."""
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, CallStart):
            calls[e.index] = [e.name]
        elif isinstance(e, CallDelta):
            calls[e.index].append(e.arguments)
    finish = next(e for e in events if isinstance(e, Finish))
    return {"text": "".join(e.text for e in events if isinstance(e, TextDelta)),
            "thinking": "".join(e.text for e in events if isinstance(e, ThinkingDelta)),
            "calls": [(name, orjson.loads("".join(args))) for name, *args in calls.values()],
            "stop": finish.stop_reason, "usage": (finish.input_tokens, finish.output_tokens)}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_stream_reaches_every_client_split_at_every_byte(provider: str, client: str) -> None:
    stream, reader = PROVIDERS[provider]
    expected = said(reader().feed(stream, end=True))
    make_writer, client_reader = CLIENTS[client]
    for cut in range(len(stream) + 1):
        translator = StreamTranslator(reader(), make_writer())
        out = translator.feed(stream[:cut]) + translator.feed(stream[cut:]) + translator.feed(b"", end=True)
        assert said(client_reader().feed(out, end=True)) == expected, (provider, client, cut)


def test_the_client_gets_its_first_byte_with_the_providers_first_event() -> None:
    translator = StreamTranslator(AnthropicReader(), OpenAIChatWriter())
    first = ANTHROPIC.split(b"\n\n")[0] + b"\n\n"
    assert translator.feed(first).startswith(b"data: ")  # the role chunk, before any text has come


def test_an_anthropic_client_sees_its_block_framing() -> None:
    translator = StreamTranslator(OpenAIChatReader(), AnthropicWriter())
    out = translator.feed(OPENAI, end=True)
    kinds = [orjson.loads(line[6:])["type"] for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2  # text, then the call


def test_usage_is_handed_on_when_the_stream_finishes() -> None:
    seen: list[Finish] = []
    StreamTranslator(GeminiReader(), AnthropicWriter(), on_finish=seen.append).feed(GEMINI, end=True)
    assert [(f.stop_reason, f.input_tokens, f.output_tokens) for f in seen] == [("tool_calls", 12, 7)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_cut_before_its_end_ends_with_the_clients_error_event_not_a_normal_finish(
        provider: str, client: str) -> None:
    stream, reader = PROVIDERS[provider]
    cut = stream[:stream.index(b"llo")]  # mid-answer: no finish reason, no message_stop
    out = StreamTranslator(reader(), CLIENTS[client][0]()).feed(cut, end=True)
    assert b"upstream_stream_failed" in out or b"error" in out
    assert b"end_turn" not in out and b'"finish_reason":"stop"' not in out and b"STOP" not in out


def test_a_providers_own_error_event_reaches_the_client_as_its_error_event() -> None:
    stream = ANTHROPIC.split(b"\n\n")[0] + b"\n\n" + sse({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}, named=True)
    out = StreamTranslator(AnthropicReader(), OpenAIChatWriter()).feed(stream, end=True)
    assert b"Overloaded" in out and b'"finish_reason":"stop"' not in out


def test_a_responses_client_gets_each_item_opened_filled_and_closed_and_the_whole_answer_at_the_end() -> None:
    out = StreamTranslator(AnthropicReader(), ResponsesWriter()).feed(ANTHROPIC, end=True)
    docs = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    kinds = [d["type"] for d in docs]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 3
    assert [d["sequence_number"] for d in docs] == list(range(1, len(docs) + 1))
    final = docs[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Héllo"
    assert final["output"][2]["arguments"] == '{"city": "Paris"}' and final["output"][2]["call_id"] == "call_1"
    assert final["output"][0]["id"].startswith(TRANSLATED_REASONING)  # ours: never sent back to OpenAI as its own
    assert final["usage"]["input_tokens"] == 12 and final["usage"]["output_tokens"] == 7


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_from_a_provider_that_only_streams_is_collected_into_one_whole_answer(provider: str) -> None:
    stream, reader = PROVIDERS[provider]
    expected = said(reader().feed(stream, end=True))
    collector = CollectedAnswer("chat", provider_endpoint(provider), "gpt-x", lambda err: b"error")
    out = b"".join(collector.feed(stream[i:i + 7], i + 7 >= len(stream)) for i in range(0, len(stream), 7))
    answer = orjson.loads(out)["choices"][0]
    assert answer["message"]["content"] == expected["text"] and answer["finish_reason"] == expected["stop"]
    call = answer["message"]["tool_calls"][0]["function"]
    assert (call["name"], orjson.loads(call["arguments"])) == expected["calls"][0]


def test_a_collected_stream_that_is_cut_is_the_clients_error_not_a_partial_answer() -> None:
    collector = CollectedAnswer("responses", "responses", "gpt-x", lambda err: err.message.encode())
    out = collector.feed(RESPONSES[:RESPONSES.index(b"llo")], True)
    assert out == b"The provider's stream ended before the answer was complete."


def provider_endpoint(provider: str) -> str:
    return {"openai": "chat", "anthropic": "messages"}.get(provider, provider)


def test_an_anthropic_client_gets_translated_thinking_signed_as_translated() -> None:
    out = StreamTranslator(ResponsesReader(), AnthropicWriter()).feed(RESPONSES, end=True)
    deltas = [orjson.loads(line[6:])["delta"] for line in out.split(b"\n")
              if line.startswith(b"data: ") and b"signature_delta" in line]
    assert deltas == [{"type": "signature_delta", "signature": TRANSLATED}]


def test_a_call_whose_arguments_go_on_after_some_text_keeps_every_fragment() -> None:
    writer = ResponsesWriter()
    out = writer.write([Start("r1", "m"), CallStart(0, "call_1", "ls"), CallDelta(0, '{"a"'), TextDelta("hm"),
                        CallDelta(0, ": 1}"), Finish("tool_calls")])
    final = orjson.loads(out.split(b"data: ")[-1])["response"]
    call = next(item for item in final["output"] if item["type"] == "function_call")
    assert orjson.loads(call["arguments"]) == {"a": 1}


@pytest.mark.parametrize("started", [True, False])
def test_a_failed_responses_stream_keeps_the_lifecycle_the_sdks_check(started: bool) -> None:
    events: list[Event] = [Start("resp_9", "m"), TextDelta("par")] if started else []
    out = ResponsesWriter().write([*events, Failed("overloaded")])
    docs = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert docs[0]["type"] == "response.created" and docs[-1]["type"] == "response.failed"
    assert docs[-1]["response"]["id"] == docs[0]["response"]["id"]
    assert docs[-1]["response"]["error"]["message"] == "overloaded"


def test_after_the_providers_error_event_nothing_more_is_read() -> None:
    stream = RESPONSES.split(b"\n\n")[0] + b"\n\n" + sse(
        {"type": "error", "code": "server_error", "message": "boom"},
        {"type": "response.failed", "response": {"error": {"message": "boom again"}}}, named=True)
    events = ResponsesReader().feed(stream, end=True)
    assert [e for e in events if isinstance(e, Failed)] == [Failed("boom")]


def test_a_responses_clients_own_stream_is_collected_as_the_providers_own_final_response() -> None:
    item = {"type": "reasoning", "id": "rs_real", "summary": [], "encrypted_content": "gAAAA"}
    custom = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_9", "name": "apply_patch", "input": "x"}
    stream = sse({"type": "response.created", "response": {"id": "resp_c", "status": "in_progress"}},
                 {"type": "response.output_item.done", "output_index": 0, "item": item},
                 {"type": "response.output_item.done", "output_index": 1, "item": custom},
                 {"type": "response.completed", "response": {"id": "resp_c", "status": "completed", "output": [],
                                                             "usage": {"input_tokens": 2}}}, named=True)
    collector = CollectedResponse(lambda err: b"error")
    out = b"".join(collector.feed(stream[i:i + 5], i + 5 >= len(stream)) for i in range(0, len(stream), 5))
    assert orjson.loads(out) == {"id": "resp_c", "status": "completed", "output": [item, custom],
                                 "usage": {"input_tokens": 2}}
    cut = CollectedResponse(lambda err: err.message.encode())
    assert cut.feed(stream[:stream.index(b"response.completed")], True) == CUT.encode() and cut.failed_status == 502
