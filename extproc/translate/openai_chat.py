"""OpenAI Chat Completions ⇄ the internal representation. Pure."""

from __future__ import annotations

from typing import Any

from extproc.translate.ir import (
    ChatAnswer,
    ChatRequest,
    Image,
    Message,
    Part,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolResult,
    check_translatable,
    data_url,
    parse_data_url,
)

_OWN_ONLY = (("n", lambda v: isinstance(v, int) and v > 1), ("logprobs", bool), ("audio", bool),
             ("prediction", bool), ("modalities", lambda v: v not in (None, ["text"])))


def _content(content: Any) -> list[Text | Image]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Text | Image] = []
    for item in content or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "text":
            parts.append(Text(str(item.get("text", ""))))
        elif item.get("type") == "image_url":
            url = item.get("image_url")
            parts.append(parse_data_url(str(url.get("url", "") if isinstance(url, dict) else url or "")))
    return parts


def _call(call: dict[str, Any]) -> ToolCall:
    fn = call.get("function") or {}
    return ToolCall(str(call.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments") or "{}"))


def read_request(doc: dict[str, Any]) -> ChatRequest:
    system: list[str] = []
    messages: list[Message] = []
    for m in doc.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(p.text for p in _content(m.get("content")) if isinstance(p, Text))
        elif role == "tool":
            result = ToolResult(str(m.get("tool_call_id", "")), tuple(_content(m.get("content"))))
            if messages and messages[-1].role == "user" and all(isinstance(p, ToolResult) for p in messages[-1].parts):
                messages[-1] = Message("user", (*messages[-1].parts, result))  # parallel calls' results together
            else:
                messages.append(Message("user", (result,)))
        elif role == "assistant":
            parts: list[Part] = []
            if m.get("reasoning_content"):
                parts.append(Thinking(str(m["reasoning_content"])))
            parts.extend(_content(m.get("content")))
            parts.extend(_call(call) for call in m.get("tool_calls") or [])
            messages.append(Message("assistant", tuple(parts)))
        else:
            messages.append(Message("user", tuple(_content(m.get("content")))))
    tools = tuple(Tool(str(f.get("name", "")), str(f.get("description", "")), dict(f.get("parameters") or {}))
                  for t in doc.get("tools") or [] if isinstance(f := t.get("function"), dict))
    choice = doc.get("tool_choice")
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name")
    stop = doc.get("stop")
    fmt = doc.get("response_format") or {}
    schema = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
    return ChatRequest(
        model=str(doc.get("model", "")), messages=tuple(messages), system=tuple(system), tools=tools,
        tool_choice=choice, parallel_tool_calls=doc.get("parallel_tool_calls"),
        max_tokens=doc.get("max_completion_tokens") or doc.get("max_tokens"), temperature=doc.get("temperature"),
        top_p=doc.get("top_p"), stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        stream=doc.get("stream") is True,
        json_schema={"name": schema.get("name", "answer"), "schema": schema.get("schema") or {}} if schema else None,
        json_object=fmt.get("type") == "json_object", reasoning_effort=doc.get("reasoning_effort"),
        untranslatable=tuple(name for name, used in _OWN_ONLY if used(doc.get(name))))


def _content_out(parts: list[Text | Image]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, Text) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, Text))
    return [{"type": "text", "text": p.text} if isinstance(p, Text)
            else {"type": "image_url", "image_url": {"url": data_url(p)}} for p in parts]


def write_request(req: ChatRequest) -> dict[str, Any]:
    check_translatable(req)
    messages: list[dict[str, Any]] = [{"role": "system", "content": s} for s in req.system]
    for m in req.messages:
        if m.role == "assistant":
            out: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(p.text for p in m.parts if isinstance(p, Text)) or None}
            calls = [p for p in m.parts if isinstance(p, ToolCall)]
            if calls:
                out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                                   "arguments": c.arguments}}
                                     for c in calls]
            messages.append(out)
            continue
        results = [p for p in m.parts if isinstance(p, ToolResult)]
        for r in results:
            messages.append({"role": "tool", "tool_call_id": r.call_id,
                             "content": "".join(p.text for p in r.content if isinstance(p, Text))})
        rest = [p for p in m.parts if isinstance(p, (Text, Image))]
        if rest or not results:
            messages.append({"role": "user", "content": _content_out(rest)})
    doc: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.tools:
        doc["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                          "parameters": t.parameters or {"type": "object"}}}
                        for t in req.tools]
    if req.tool_choice is not None:
        doc["tool_choice"] = req.tool_choice if req.tool_choice in ("auto", "none", "required") else \
            {"type": "function", "function": {"name": req.tool_choice}}
    if req.parallel_tool_calls is not None and req.tools:
        doc["parallel_tool_calls"] = req.parallel_tool_calls
    for key, value in (("max_tokens", req.max_tokens), ("temperature", req.temperature), ("top_p", req.top_p),
                       ("reasoning_effort", req.reasoning_effort)):
        if value is not None:
            doc[key] = value
    if req.stop:
        doc["stop"] = list(req.stop)
    if req.stream:
        doc["stream"] = True
        doc["stream_options"] = {"include_usage": True}
    if req.json_schema:
        doc["response_format"] = {"type": "json_schema", "json_schema": {**req.json_schema, "strict": True}}
    elif req.json_object:
        doc["response_format"] = {"type": "json_object"}
    return doc


_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
           "content_filter": "content_filter"}


def read_answer(doc: dict[str, Any]) -> ChatAnswer:
    choice = (doc.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts: list[Part] = []
    if message.get("reasoning_content"):
        parts.append(Thinking(str(message["reasoning_content"])))
    if message.get("content"):
        parts.append(Text(str(message["content"])))
    parts.extend(_call(call) for call in message.get("tool_calls") or [])
    usage = doc.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return ChatAnswer(str(doc.get("id", "")), str(doc.get("model", "")), tuple(parts),
                      _FINISH.get(str(choice.get("finish_reason")), "stop"),
                      int(usage.get("prompt_tokens") or 0) - cached, int(usage.get("completion_tokens") or 0), cached,
                      0, int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0))


def write_answer(answer: ChatAnswer, created: int = 0) -> dict[str, Any]:
    text = "".join(p.text for p in answer.parts if isinstance(p, Text))
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = [p for p in answer.parts if isinstance(p, ToolCall)]
    if calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                               "arguments": c.arguments}}
                                 for c in calls]
    thinking = "".join(p.text for p in answer.parts if isinstance(p, Thinking))
    if thinking:
        message["reasoning_content"] = thinking
    prompt = answer.input_tokens + answer.cache_read_tokens + answer.cache_write_tokens
    return {"id": answer.id, "object": "chat.completion", "created": created, "model": answer.model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer.stop_reason}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": answer.output_tokens,
                      "total_tokens": prompt + answer.output_tokens,
                      "prompt_tokens_details": {"cached_tokens": answer.cache_read_tokens},
                      "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens}}}
