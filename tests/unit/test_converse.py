"""Bedrock's Converse, the pure parts: a chat request written as Converse (and what it cannot say refused), its
answer and ConverseStream's events (framed by AWS, split anywhere) read back, and the config that sends a Bedrock
model to Converse or to InvokeModel by its id."""

from __future__ import annotations

import json

import pytest

from extproc.config import parse_settings
from extproc.core.errors import ConfigError
from extproc.core.providers import Api
from extproc.formats.bedrock import BedrockStream
from extproc.request.transforms.converse import ConverseError, answer_maker
from extproc.translate import converse, openai_chat
from extproc.translate.ir import CallDelta, CallStart, Failed, Finish, Start, TextDelta, Unsupported
from tests.fake_bedrock import converse_answer, converse_refusal, exception

MODEL = "us.meta.llama4-maverick-17b-instruct-v1:0"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def write(doc: dict[str, object]) -> dict[str, object]:
    return converse.write_request(openai_chat.read_request(doc))


def test_a_chat_request_is_written_as_converse_with_turns_joined() -> None:
    doc = write({"model": "x", "stream": True, "max_tokens": 9, "top_p": 0.5, "tools": TOOLS, "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}, "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "user", "content": "and?"}]})
    assert "model" not in doc and "stream" not in doc and converse_refusal(doc) is None  # as Bedrock checks it
    assert doc["system"] == [{"text": "sys"}] and doc["inferenceConfig"] == {"maxTokens": 9, "topP": 0.5}
    assert doc["messages"] == [
        {"role": "user", "content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": "iVBO"}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "c1", "name": "get_weather",
                                                       "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "c1", "content": [{"text": "rain"}]}},
                                     {"text": "and?"}]}]  # the result and the next question: one user turn
    assert doc["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
        "type": "object"}}}}], "toolChoice": {"tool": {"name": "get_weather"}}}


@pytest.mark.parametrize(("extra", "said"), [
    ({"response_format": {"type": "json_object"}}, "structured"),
    ({"reasoning_effort": "high"}, "reasoning"),
    ({"tools": TOOLS, "tool_choice": "none"}, "tool_choice none"),
    ({"n": 2}, "n"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
     "image by URL"),
])
def test_what_converse_cannot_say_is_unsupported(extra: dict[str, object], said: str) -> None:
    with pytest.raises(Unsupported, match=said):
        write({"messages": [{"role": "user", "content": "hi"}], **extra})


def test_a_converse_answer_reads_as_openais() -> None:
    status, _, body = converse_answer({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "toolConfig": {
        "tools": [{"toolSpec": {"name": "get_weather"}}]}}, MODEL, False)
    answer = converse.read_answer(json.loads(body), "llama", answer_id="chatcmpl-1")
    out = openai_chat.write_answer(answer)
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) == \
        ("tooluse_bdrk_1", "get_weather", {"city": "Lima"})
    assert out["choices"][0]["finish_reason"] == "tool_calls" and out["id"] == "chatcmpl-1" and out["model"] == "llama"
    assert out["usage"]["prompt_tokens"] == 11 and out["usage"]["completion_tokens"] == 6
    cached = converse.read_answer({"output": {"message": {"content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm"}}}, {"text": "ok"}]}}, "stopReason": "max_tokens",
        "usage": {"inputTokens": 5, "outputTokens": 2, "cacheReadInputTokens": 100}}, "m")
    assert cached.stop_reason == "length" and (cached.input_tokens, cached.cache_read_tokens) == (5, 100)
    assert [type(p).__name__ for p in cached.parts] == ["Thinking", "Text"]


@pytest.mark.parametrize("size", [1, 5, 64, 4096])
def test_converse_stream_split_anywhere_reads_as_events(size: int) -> None:
    _, _, framed = converse_answer({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "toolConfig": {
        "tools": [{"toolSpec": {"name": "get_weather"}}]}}, MODEL, True)
    frames, reader = BedrockStream({}), converse.ConverseReader("llama", answer_id="id1")
    events = [e for i in range(0, len(framed), size) for e in reader.feed(frames.feed(framed[i:i + size]))]
    events += reader.feed(b"", end=True)
    assert events == [Start("id1", "llama"), CallStart(0, "tooluse_bdrk_1", "get_weather"),
                      CallDelta(0, '{"city":'), CallDelta(0, ' "Lima"}'), Finish("tool_calls", 11, 6)]


def test_converse_stream_events_go_on_as_sse_named_by_type_and_an_exception_ends_them() -> None:
    _, _, framed = converse_answer({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, MODEL, True,
                                   ("throttlingException", "slow down"))
    sse = BedrockStream({"throttlingException": 529}).feed(framed)
    assert sse.startswith(b"event: messageStart\ndata: {")
    events = converse.ConverseReader().feed(sse, end=True)
    assert events[1] == TextDelta(f"hello from {MODEL}"[:len(f"hello from {MODEL}") // 2])
    assert events[-1] == Failed("slow down")


def test_a_stream_without_message_stop_was_cut() -> None:
    _, _, framed = converse_answer({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, MODEL, True)
    cut = BedrockStream({}).feed(framed)
    cut = cut[:cut.index(b"event: messageStop")]
    assert isinstance(converse.ConverseReader().feed(cut, end=True)[-1], Failed)


def test_an_error_becomes_openais_envelope_with_its_status() -> None:
    shaper = answer_maker(parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "us-east-1"}}}, {})
                          .providers["aws"].converse, "llama", False)(False, 429)  # type: ignore[arg-type]
    assert isinstance(shaper, ConverseError)
    assert shaper.feed(b'{"message":"Too many', False) == b""
    out = json.loads(shaper.feed(b' requests"}', True))
    assert out["error"]["message"] == "Too many requests" and out["error"]["type"] == "rate_limit_error"


def test_a_bedrock_model_goes_to_converse_or_invoke_by_its_id() -> None:
    provider = parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "us-east-1", "models": {
        "llama-4-maverick": MODEL, "claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}}}},
        {}).providers["aws"]
    assert provider.deployment_endpoints == {"llama-4-maverick": frozenset({"chat"}),
                                             "claude-sonnet-4-5": frozenset({"messages"})}
    assert provider.upstream_path(Api.OPENAI, "/converse", "llama-4-maverick") == \
        "/model/us.meta.llama4-maverick-17b-instruct-v1%3A0/converse"
    assert provider.converse is not None and provider.converse.stop_reasons["guardrail_intervened"] == "content_filter"
    assert provider.target(Api.ANTHROPIC, "messages", provider.deployment_endpoints["llama-4-maverick"]) == \
        (Api.OPENAI, "chat")


def test_converse_data_is_checked_where_a_user_overrides_it() -> None:
    over = parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "us-east-1", "converse": {
        "whole": "/converse", "stream": "/converse-stream", "stop_reasons": {"guardrail_intervened": "stop"}}}}}, {})
    spec = over.providers["aws"].converse
    assert spec is not None and spec.stop_reasons == {"guardrail_intervened": "stop"}
    for reason, finish in (("guardrail_intervened", "stop"), ("tool_use", "tool_calls")):  # the rest as built in
        body = b'{"output": {"message": {"content": [{"text": "x"}]}}, "stopReason": "%s"}' % reason.encode()
        said = json.loads(answer_maker(spec, "m", False)(False, 200).feed(body, True))
        assert said["choices"][0]["finish_reason"] == finish
    with pytest.raises(ConfigError, match="providers.aws.converse.stop_reasons.end_turn"):
        parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "us-east-1", "converse": {
            "whole": "/converse", "stream": "/converse-stream", "stop_reasons": {"end_turn": "done"}}}}}, {})


def test_exception_frames_are_the_fakes_own() -> None:
    """The fake's exception frame is what the stream's reader ends on (a guard on the fake itself)."""
    assert b"error" in BedrockStream({}).feed(exception("validationException", "bad"))
