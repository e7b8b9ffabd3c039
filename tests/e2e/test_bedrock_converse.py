"""Bedrock's other models (here Llama) through Converse and ConverseStream, through a real Envoy. The fake Bedrock
recomputes each request's SigV4 signature with botocore's own signer, checks the body as Converse does, and answers
streams in AWS's event-stream framing. The OpenAI SDK is served whole, streamed with its usage, and through a tool
call's round trip; the Anthropic SDK on the same model is translated to chat and then to Converse; a Claude model of
the same provider stays on InvokeModel; a throttle and a stream cut by an exception reach the client in its own
envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import Stack, Stacks
from tests.e2e.test_bedrock import BEDROCK_ID, KEY_ID, KEYS, QUICK, REGION, SECRET, TOKEN
from tests.fake_bedrock import CONVERSE_USAGE, FakeBedrock, aws_error

LLAMA = "llama-4-maverick"
LLAMA_ID = "us.meta.llama4-maverick-17b-instruct-v1:0"
LLAMA_PATH = "/model/us.meta.llama4-maverick-17b-instruct-v1%3A0"
# Names of the same model for the error cases, one each: what health learns of an error (from Envoy's access log, a
# moment after the client's answer) never meets another case's request.
THROTTLED = ("llama-throttled-1", "llama-throttled-2", "llama-throttled-3")
CHAT = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    server = FakeBedrock(REGION, {KEY_ID: (SECRET, TOKEN)}, (BEDROCK_ID, LLAMA_ID))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(bedrock: FakeBedrock) -> None:
    bedrock.reset()
    bedrock.signed.clear()


@pytest.fixture(scope="module")
def stack(bedrock: FakeBedrock, make_module_stack: Stacks) -> Stack:
    """One Bedrock provider with Llama and Claude, signed with keys from the environment."""
    return make_module_stack({"discovery": False, "strategy": "none", "health": QUICK, "failover": {"attempts": 1},
                              "providers": {"bedrock": {
                                  "kind": "bedrock", "region": REGION, "endpoint": bedrock.base_url,
                                  "models": {LLAMA: LLAMA_ID, "claude-sonnet-4-5": BEDROCK_ID,
                                             **{m: LLAMA_ID for m in THROTTLED}}}}}, KEYS)


def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)


def sent(bedrock: FakeBedrock, call: str) -> dict[str, Any]:
    """The last request's Converse body, after checking it went to `call`, signed, without the client's key."""
    last = bedrock.requests[-1]
    assert last.path == f"{LLAMA_PATH}/{call}" and bedrock.signed[-1] == KEY_ID
    assert last.headers["authorization"].startswith("AWS4-HMAC-SHA256 ") and "client-own-key" not in json.dumps(
        last.headers)
    doc: dict[str, Any] = last.json()
    return doc


def test_the_openai_sdk_is_served_by_converse_whole_and_streamed(stack: Stack, bedrock: FakeBedrock) -> None:
    raw = oa(stack).chat.completions.with_raw_response.create(
        model=LLAMA, messages=[{"role": "system", "content": "be brief"}, *CHAT],  # type: ignore[list-item]
        max_tokens=50, temperature=0.2, stop=["END"])
    answer = raw.parse()
    assert answer.choices[0].message.content == f"hello from {LLAMA_ID}" and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 6)
    assert raw.headers["x-extproc-provider"] == "bedrock" and raw.headers["x-extproc-model"] == LLAMA
    doc = sent(bedrock, "converse")
    assert doc == {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "be brief"}],
                   "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]}}

    chunks = list(oa(stack).chat.completions.create(model=LLAMA, messages=CHAT, stream=True,  # type: ignore[arg-type]
                                                    stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"hello from {LLAMA_ID}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == CONVERSE_USAGE["totalTokens"]
    assert "stream" not in sent(bedrock, "converse-stream")
    records = stack.usage_records()[-2:]  # each accounted with Converse's own figures, whole and streamed
    assert [(r["served_model"], r["input_tokens"], r["output_tokens"]) for r in records] == [(LLAMA, 11, 6)] * 2


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_call_makes_its_round_trip_through_converse(stack: Stack, bedrock: FakeBedrock,
                                                           streamed: bool) -> None:
    client = oa(stack)
    if streamed:
        chunks = list(client.chat.completions.create(model=LLAMA, messages=CHAT, tools=TOOLS,  # type: ignore[arg-type]
                                                     tool_choice="required", stream=True))
        deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
        call_id, name = deltas[0].id, deltas[0].function.name  # type: ignore[union-attr]
        arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
    else:
        answer = client.chat.completions.create(model=LLAMA, messages=CHAT, tools=TOOLS,  # type: ignore[arg-type]
                                                tool_choice="required")
        call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments  # type: ignore[union-attr]
        assert answer.choices[0].finish_reason == "tool_calls"
    assert (call_id, name, json.loads(arguments)) == ("tooluse_bdrk_1", "get_weather", {"city": "Lima"})
    doc = sent(bedrock, "converse-stream" if streamed else "converse")
    assert doc["toolConfig"]["toolChoice"] == {"any": {}}
    schema = doc["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert schema["properties"] == {"city": {"type": "string"}}

    history = [*CHAT, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}]
    final = client.chat.completions.create(model=LLAMA, messages=history, tools=TOOLS)  # type: ignore[arg-type]
    assert final.choices[0].message.content == f"hello from {LLAMA_ID}: sunny, 21 C"
    turns = sent(bedrock, "converse")["messages"]
    assert turns[1] == {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_bdrk_1",
                                                                      "name": "get_weather",
                                                                      "input": {"city": "Lima"}}}]}
    assert turns[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_bdrk_1",
                                                                    "content": [{"text": "sunny, 21 C"}]}}]}


def test_the_anthropic_sdk_is_served_by_a_converse_model(stack: Stack, bedrock: FakeBedrock) -> None:
    an = anthropic.Anthropic(base_url=stack.url, api_key="client-own-key", max_retries=0)
    raw = an.messages.with_raw_response.create(model=LLAMA, max_tokens=64, system="be brief",
                                               messages=CHAT)  # type: ignore[arg-type]
    answer = raw.parse()
    assert answer.content[0].text == f"hello from {LLAMA_ID}"  # type: ignore[union-attr]
    assert answer.stop_reason == "end_turn" and answer.usage.output_tokens == 6
    assert "translated messages->chat" in raw.headers["x-extproc-route"]
    assert sent(bedrock, "converse")["system"] == [{"text": "be brief"}]
    with an.messages.stream(model=LLAMA, max_tokens=64, messages=CHAT) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == f"hello from {LLAMA_ID}"
        assert stream.get_final_message().usage.output_tokens == 6
    sent(bedrock, "converse-stream")


def test_claude_on_the_same_provider_stays_on_invoke_model(stack: Stack, bedrock: FakeBedrock) -> None:
    answer = oa(stack).chat.completions.create(model="claude-sonnet-4-5", messages=CHAT)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == f"hello from {BEDROCK_ID}"
    assert bedrock.requests[-1].path.endswith("/invoke") and "anthropic_version" in bedrock.requests[-1].json()


def test_what_converse_cannot_say_is_refused_before_it_goes(stack: Stack, bedrock: FakeBedrock) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oa(stack).chat.completions.create(model=LLAMA, messages=CHAT,  # type: ignore[arg-type]
                                          response_format={"type": "json_object"})
    assert "structured (JSON) answer" in refused.value.message
    assert not bedrock.requests


def test_throttles_and_a_cut_stream_reach_the_client_in_its_envelope(stack: Stack, bedrock: FakeBedrock) -> None:
    bedrock.script(*aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(openai.RateLimitError) as throttled:
        oa(stack).chat.completions.create(model=THROTTLED[0], messages=CHAT)  # type: ignore[arg-type]
    assert "Too many requests" in throttled.value.message
    bedrock.script(*aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    an = anthropic.Anthropic(base_url=stack.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        an.messages.create(model=THROTTLED[1], max_tokens=10, messages=CHAT)  # type: ignore[arg-type]
    bedrock.stream_exception = ("throttlingException", "Too many tokens, please wait before trying again.")
    with pytest.raises(openai.APIError) as midway:
        list(oa(stack).chat.completions.create(model=THROTTLED[2], messages=CHAT,  # type: ignore[arg-type]
                                               stream=True))
    assert "Too many tokens" in midway.value.message
