"""Translation between the APIs through the internal representation: recorded-shape requests and answers of
each API, both directions, tool-call round trips, and what a target cannot express."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from extproc.translate import anthropic, gemini, held, openai_chat, responses, transform
from extproc.translate.ir import TRANSLATED, ChatRequest, Image, Text, Thinking, ToolCall, ToolResult, Unsupported

PNG = "iVBORw0KGgo="


def same(parts: Any) -> Any:
    """Parts with tool-call arguments as data: JSON text may change spacing on the way, never meaning."""
    return [(p.id, p.name, orjson.loads(p.arguments)) if isinstance(p, ToolCall) else p for p in parts]
OPENAI_REQUEST: dict[str, Any] = {
    "model": "gpt-x", "max_tokens": 300, "temperature": 0.2, "stop": ["END"], "parallel_tool_calls": False,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is in these, and the weather in Paris?"},
                                     {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": '{"tz": "CET"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "14:00"},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                "parameters": {"type": "object", "properties": {"city": {}}}}},
              {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
}


def test_openai_chat_to_anthropic_keeps_system_images_tools_and_call_ids() -> None:
    doc = anthropic.write_request(openai_chat.read_request(OPENAI_REQUEST))
    assert doc["system"] == "Be brief." and doc["max_tokens"] == 300 and doc["stop_sequences"] == ["END"]
    user, calls, results = doc["messages"]
    assert [b["type"] for b in user["content"]] == ["text", "image", "image"]
    assert user["content"][1]["source"] == {"type": "url", "url": "https://img.example/cat.png"}
    assert user["content"][2]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    assert calls == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "time", "input": {"tz": "CET"}}]}
    assert results["role"] == "user" and [(b["tool_use_id"], b["content"][0]["text"]) for b in results["content"]] \
        == [("call_a", "18C"), ("call_b", "14:00")]  # parallel results in one turn, as Anthropic wants them
    assert doc["tools"][0] == {"name": "weather", "description": "Weather now",
                               "input_schema": {"type": "object", "properties": {"city": {}}}}
    assert doc["tool_choice"] == {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}


def test_anthropic_to_openai_chat_and_back_is_the_same_request() -> None:
    ir = openai_chat.read_request(OPENAI_REQUEST)
    back = openai_chat.read_request(openai_chat.write_request(anthropic.read_request(anthropic.write_request(ir))))
    assert [same(m.parts) for m in back.messages] == [same(m.parts) for m in ir.messages]
    assert [m.role for m in back.messages] == [m.role for m in ir.messages]
    assert back.system == ir.system and back.tools == ir.tools
    assert (back.tool_choice, back.max_tokens, back.stop, back.parallel_tool_calls) == \
        (ir.tool_choice, ir.max_tokens, ir.stop, ir.parallel_tool_calls)


def test_openai_chat_to_gemini_names_results_by_their_calls_and_back() -> None:
    request = {**OPENAI_REQUEST, "messages": [m for m in OPENAI_REQUEST["messages"]
                                              if m["role"] != "user"] + [{"role": "user", "content": "thanks"}]}
    doc = gemini.write_request(openai_chat.read_request(request))
    assert doc["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    model_turn, results, last = doc["contents"]
    assert model_turn == {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}},
                                                      "thoughtSignature": gemini.OTHER_MODELS_SIGNATURE},
                                                     {"functionCall": {"name": "time", "args": {"tz": "CET"}}}]}
    assert [p["functionResponse"]["name"] for p in results["parts"]] == ["weather", "time"]
    assert doc["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    assert doc["generationConfig"] == {"maxOutputTokens": 300, "temperature": 0.2, "stopSequences": ["END"]}
    ir = gemini.read_request(doc, "gemini-x")  # Gemini has no call ids: made up, and consistent across turns
    calls = [p for p in ir.messages[0].parts if isinstance(p, ToolCall)]
    answers = [p for p in ir.messages[1].parts if isinstance(p, ToolResult)]
    assert [c.id for c in calls] == [r.call_id for r in answers] and ir.model == "gemini-x"


def test_gemini_request_to_anthropic() -> None:
    doc = {"contents": [{"role": "user", "parts": [{"text": "Describe"},
                                                   {"inlineData": {"mimeType": "image/png", "data": PNG}}]}],
           "systemInstruction": {"parts": [{"text": "You are terse."}]},
           "generationConfig": {"maxOutputTokens": 50, "thinkingConfig": {"thinkingBudget": 2048}}}
    out = anthropic.write_request(gemini.read_request(doc, "claude-x"))
    assert out["system"] == "You are terse." and out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert out["max_tokens"] >= 2048 + 1024  # Anthropic's max_tokens must exceed the thinking budget
    assert out["messages"][0]["content"][1]["source"]["media_type"] == "image/png"


def test_thinking_signatures_go_back_only_to_the_provider_that_made_them() -> None:
    doc = {"model": "claude-x", "max_tokens": 10, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                                          {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "more"}]}
    ir = anthropic.read_request(doc)
    assert ir.messages[1].parts[0] == Thinking("hmm", "sig-1")
    elsewhere = anthropic.write_request(ir)
    assert [b["type"] for b in elsewhere["messages"][1]["content"]] == ["text"]
    home = anthropic.write_request(ir, keep_thinking=True)
    assert home["messages"][1]["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "sig-1"}
    assert "reasoning_content" not in str(openai_chat.write_request(ir))


@pytest.mark.parametrize(("request_doc", "write", "why"), [
    ({"model": "m", "n": 2, "messages": []}, anthropic.write_request, "n"),
    ({"model": "m", "logprobs": True, "messages": []}, gemini.write_request, "logprobs"),
    ({"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}}}, anthropic.write_request, "structured"),
    ({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}]}]}, gemini.write_request, "URL"),
])
def test_what_a_target_cannot_express_is_refused_not_dropped(request_doc: dict[str, Any], write: Any,
                                                             why: str) -> None:
    with pytest.raises(Unsupported, match=why):
        write(openai_chat.read_request(request_doc))


def test_json_schema_output_reaches_gemini_as_its_response_schema() -> None:
    ir = openai_chat.read_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "pt", "schema": {"type": "object"}}}})
    gen = gemini.write_request(ir)["generationConfig"]
    assert gen == {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}
    back = openai_chat.write_request(gemini.read_request(gemini.write_request(ir), "m"))
    assert back["response_format"]["json_schema"]["schema"] == {"type": "object"}


ANSWERS: list[tuple[str, Any, dict[str, Any]]] = [
    ("anthropic", anthropic.read_answer, {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
        "content": [{"type": "thinking", "thinking": "let me see", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 5}}),
    ("openai", openai_chat.read_answer, {
        "id": "chatcmpl-1", "model": "gpt-x", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "reasoning_content": "let me see", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}}],
        "usage": {"prompt_tokens": 15, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 5}}}),
    ("responses", responses.read_answer, {
        "id": "resp_1", "object": "response", "model": "gpt-x", "status": "completed", "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "let me see"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "toolu_1", "name": "weather", "arguments": '{"city":"Paris"}'}],
        "usage": {"input_tokens": 15, "output_tokens": 20, "input_tokens_details": {"cached_tokens": 5}}}),
    ("gemini", lambda d: gemini.read_answer(d, "gemini-x"), {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "let me see", "thought": True}, {"text": "Checking."},
            {"functionCall": {"id": "toolu_1", "name": "weather", "args": {"city": "Paris"}}}]},
            "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 20, "cachedContentTokenCount": 5}}),
]


@pytest.mark.parametrize(("name", "read", "doc"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_an_answer_of_each_api_reads_the_same_and_writes_as_every_other(name: str, read: Any,
                                                                        doc: dict[str, Any]) -> None:
    answer = read(doc)
    assert [type(p) for p in answer.parts] == [Thinking, Text, ToolCall]
    assert answer.parts[1] == Text("Checking.") and answer.stop_reason == "tool_calls"
    call = answer.parts[2]
    assert isinstance(call, ToolCall) and (call.id, call.name, orjson.loads(call.arguments)) == \
        ("toolu_1", "weather", {"city": "Paris"})
    assert (answer.input_tokens, answer.cache_read_tokens) == (10, 5)
    oa = openai_chat.write_answer(answer)
    assert oa["choices"][0]["finish_reason"] == "tool_calls" and oa["usage"]["prompt_tokens"] == 15
    assert oa["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "weather"
    an = anthropic.write_answer(answer)
    assert an["stop_reason"] == "tool_use" and an["content"][-1]["input"] == {"city": "Paris"}
    gm = gemini.write_answer(answer)
    assert gm["candidates"][0]["content"]["parts"][-1] == {"functionCall": {"name": "weather",
                                                                             "args": {"city": "Paris"}},
                                                            "thoughtSignature": gemini.OTHER_MODELS_SIGNATURE}
    assert same(openai_chat.read_answer(oa).parts[1:]) == same(answer.parts[1:])
    assert same(responses.read_answer(responses.write_answer(answer)).parts[1:]) == same(answer.parts[1:])
    assert same(anthropic.read_answer(an).parts[1:]) == same(answer.parts[1:])


def test_a_text_only_message_stays_a_string_and_images_stay_images() -> None:
    ir = ChatRequest("m", (openai_chat.read_request({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}).messages))
    assert openai_chat.write_request(ir)["messages"] == [{"role": "user", "content": "ab"}]
    image = openai_chat.read_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}}]}]}).messages[0].parts[0]
    assert image == Image(media_type="image/jpeg", data=PNG)


def test_a_chat_client_reaches_a_responses_only_login_and_back() -> None:
    """The Codex (ChatGPT) login speaks only the Responses API."""
    doc = responses.write_request(openai_chat.read_request({**OPENAI_REQUEST, "stop": None}))
    assert doc["instructions"] == "Be brief." and doc["store"] is False and doc["max_output_tokens"] == 300
    kinds = [(i["type"], i.get("role")) for i in doc["input"]]
    assert kinds == [("message", "user"), ("function_call", None), ("function_call", None),
                     ("function_call_output", None), ("function_call_output", None)]
    assert doc["input"][0]["content"][1] == {"type": "input_image", "image_url": "https://img.example/cat.png"}
    assert doc["tool_choice"] == {"type": "function", "name": "weather"}
    back = openai_chat.write_request(responses.read_request(doc))
    assert [m["role"] for m in back["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    with pytest.raises(Unsupported, match="stop sequences"):
        responses.write_request(openai_chat.read_request(OPENAI_REQUEST))


def test_a_responses_request_bound_to_provider_state_is_never_rebuilt_elsewhere() -> None:
    doc = {"model": "gpt-x", "input": "and then?", "previous_response_id": "resp_9"}
    with pytest.raises(Unsupported, match="previous_response_id"):
        anthropic.write_request(responses.read_request(doc))
    plain = anthropic.write_request(responses.read_request({"model": "gpt-x", "input": "hi",
                                                            "reasoning": {"effort": "high"}}))
    assert plain["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert plain["thinking"]["budget_tokens"] == 16384


# Provider-held state: thinking written here from another provider's never goes back to the client's own API.

def test_thinking_from_another_provider_reaches_an_anthropic_client_signed_as_translated() -> None:
    answer = openai_chat.read_answer({"id": "c1", "model": "gpt-x", "choices": [{"finish_reason": "stop", "message": {
        "role": "assistant", "reasoning_content": "think", "content": "done"}}]})
    blocks = anthropic.write_answer(answer)["content"]
    assert blocks[0] == {"type": "thinking", "thinking": "think", "signature": TRANSLATED}


def test_translated_thinking_is_left_out_of_a_request_to_anthropic_and_thinking_is_off_for_that_turn() -> None:
    own = {"type": "thinking", "thinking": "mine", "signature": "EqQBCkYIBxgCKkDreal"}
    doc: dict[str, Any] = {
        "model": "claude-x", "thinking": {"type": "enabled", "budget_tokens": 2048},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [own, {"type": "text", "text": "earlier"}]},
            {"role": "user", "content": "go on"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "theirs", "signature": TRANSLATED},
                                              {"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}]}]}
    assert held.MARK in orjson.dumps(doc)
    assert held.drop_translated("messages", doc) is True
    assert doc["messages"][1]["content"][0] == own  # Anthropic's own signed thinking stays
    assert doc["messages"][3]["content"] == [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]
    assert "thinking" not in doc and "context_management" not in doc
    assert held.drop_translated("messages", doc) is False  # nothing left to drop: the body goes as it came


def test_translated_reasoning_items_are_left_out_of_a_request_to_openai() -> None:
    written = responses.write_answer(anthropic.read_answer({"id": "m1", "model": "claude-x", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": "ok"}],
        "stop_reason": "end_turn", "usage": {}}))
    history = [{"role": "user", "content": "hi"}, *written["output"], {"role": "user", "content": "more"}]
    own = {"type": "reasoning", "id": "rs_abc", "summary": [], "encrypted_content": "gAAA"}
    doc = {"model": "gpt-x", "input": [*history, own]}
    assert held.drop_translated("responses", doc) is True
    assert [i.get("type", "message") for i in doc["input"]] == ["message", "message", "message", "reasoning"]
    assert doc["input"][-1] == own


def test_a_call_another_provider_made_reaches_gemini_with_the_signature_gemini_documents_for_it() -> None:
    req = openai_chat.read_request({"model": "g", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "tool", "tool_call_id": "c2", "content": "2"}]})
    parts = gemini.write_request(req)["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in parts] == [gemini.OTHER_MODELS_SIGNATURE, None]  # the turn's first


def test_a_request_is_read_once_to_learn_which_apis_can_express_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each target API's writer says what it cannot express; the client's request is read once for all of them."""
    chat, reads = transform.APIS["chat"], []

    def read(doc: dict[str, Any]) -> ChatRequest:
        reads.append(doc)
        return chat.read_request(doc)

    monkeypatch.setitem(transform.APIS, "chat", replace(chat, read_request=read))
    doc = {**OPENAI_REQUEST, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}
    check = transform.TranslationCheck("chat", doc, streams=False)
    assert check.refusal("responses", "gpt-x") == "stop sequences (the Responses API has none)"
    assert check.refusal("messages", "claude-x") == "a structured (JSON schema) answer"
    assert check.refusal("gemini", "gemini-x") == "an image by URL (Gemini takes inline images or uploaded files)"
    assert reads == [doc]


def test_a_request_in_no_shape_its_api_defines_is_refused_and_a_gemini_stream_must_ask_for_sse() -> None:
    misshapen = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": ["high"]}
    assert transform.TranslationCheck("chat", misshapen, streams=False).refusal("messages", "claude-x") == \
        "a field of the request is not in the shape its API defines"
    contents = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert transform.TranslationCheck("gemini", contents, streams=True, query="key=k").refusal("chat", "gpt-x") == \
        "a Gemini stream as a JSON array (ask with alt=sse)"
    assert transform.TranslationCheck("gemini", contents, streams=True, query="alt=sse").refusal("chat", "gpt-x") \
        is None
