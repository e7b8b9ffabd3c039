"""OpenAI Responses ⇄ the internal representation. Pure.

`previous_response_id` and stored conversations are state the provider holds: such a request cannot be
rebuilt for another API (it is `untranslatable`). Encrypted reasoning items likewise stay with their
provider: they are left out of a request written for another.
"""

from __future__ import annotations

from typing import Any

from extproc.translate.ir import (
    TRANSLATED_REASONING,
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
    Unsupported,
    check_translatable,
    data_url,
    parse_data_url,
)


def _content(content: Any) -> list[Text | Image]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Text | Image] = []
    for c in content or []:
        kind = c.get("type") if isinstance(c, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(Text(str(c.get("text", ""))))
        elif kind == "input_image":
            parts.append(parse_data_url(str(c.get("image_url", ""))))
    return parts


def _add(messages: list[Message], role: str, part: Part) -> None:
    """Consecutive items of one role make one turn (calls and their results come as separate items)."""
    if messages and messages[-1].role == role:
        messages[-1] = Message(role, (*messages[-1].parts, part))
    else:
        messages.append(Message(role, (part,)))


def read_request(doc: dict[str, Any]) -> ChatRequest:
    system = [str(doc["instructions"])] if doc.get("instructions") else []
    messages: list[Message] = []
    items = doc.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.extend(p.text for p in _content(item.get("content")) if isinstance(p, Text))
                continue
            for part in _content(item.get("content")):
                _add(messages, "assistant" if role == "assistant" else "user", part)
        elif kind == "function_call":
            _add(messages, "assistant", ToolCall(str(item.get("call_id", "")), str(item.get("name", "")),
                                                 str(item.get("arguments") or "{}")))
        elif kind == "function_call_output":
            output = item.get("output")
            _add(messages, "user", ToolResult(str(item.get("call_id", "")),
                                              tuple(_content(output)) if not isinstance(output, str)
                                              else (Text(output),)))
        elif kind == "reasoning":
            text = "".join(str(s.get("text", "")) for s in item.get("summary") or [] if isinstance(s, dict))
            _add(messages, "assistant", Thinking(text, str(item.get("encrypted_content") or "")))
    tools = tuple(Tool(str(t.get("name", "")), str(t.get("description", "")), dict(t.get("parameters") or {}))
                  for t in doc.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function")
    own = [f"tools of type {t.get('type')}" for t in doc.get("tools") or []
           if isinstance(t, dict) and t.get("type") != "function"]
    if doc.get("previous_response_id"):
        own.append("previous_response_id (a conversation the provider keeps)")
    if doc.get("conversation"):
        own.append("conversation (kept by the provider)")
    choice = doc.get("tool_choice")
    if isinstance(choice, dict):
        choice = choice.get("name")
    fmt = (doc.get("text") or {}).get("format") or {}
    reasoning = doc.get("reasoning") or {}
    return ChatRequest(
        model=str(doc.get("model", "")), messages=tuple(messages), system=tuple(system), tools=tools,
        tool_choice=choice, parallel_tool_calls=doc.get("parallel_tool_calls"),
        max_tokens=doc.get("max_output_tokens"), temperature=doc.get("temperature"), top_p=doc.get("top_p"),
        stream=doc.get("stream") is True,
        json_schema={"name": fmt.get("name", "answer"), "schema": fmt.get("schema") or {}}
        if fmt.get("type") == "json_schema" else None,
        json_object=fmt.get("type") == "json_object", reasoning_effort=reasoning.get("effort"),
        untranslatable=tuple(own))


def write_request(req: ChatRequest) -> dict[str, Any]:
    check_translatable(req)
    items: list[dict[str, Any]] = []
    for m in req.messages:
        text_role = "assistant" if m.role == "assistant" else "user"
        content: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, Text):
                content.append({"type": "output_text" if text_role == "assistant" else "input_text", "text": p.text})
            elif isinstance(p, Image):
                if text_role == "assistant":
                    raise Unsupported("an image in an assistant turn")
                content.append({"type": "input_image", "image_url": data_url(p)})
            elif isinstance(p, ToolCall):
                items.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
            elif isinstance(p, ToolResult):
                items.append({"type": "function_call_output", "call_id": p.call_id,
                              "output": "".join(c.text for c in p.content if isinstance(c, Text))})
        if content:
            items.append({"type": "message", "role": text_role, "content": content})
    doc: dict[str, Any] = {"model": req.model, "input": items, "store": False}
    if req.system:
        doc["instructions"] = "\n\n".join(req.system)
    if req.tools:
        doc["tools"] = [{"type": "function", "name": t.name, "description": t.description,
                         "parameters": t.parameters or {"type": "object"}} for t in req.tools]
    if req.tool_choice is not None:
        doc["tool_choice"] = req.tool_choice if req.tool_choice in ("auto", "none", "required") else \
            {"type": "function", "name": req.tool_choice}
    if req.parallel_tool_calls is not None and req.tools:
        doc["parallel_tool_calls"] = req.parallel_tool_calls
    for key, value in (("max_output_tokens", req.max_tokens), ("temperature", req.temperature),
                       ("top_p", req.top_p)):
        if value is not None:
            doc[key] = value
    if req.stop:
        raise Unsupported("stop sequences (the Responses API has none)")
    if req.stream:
        doc["stream"] = True
    if req.json_schema:
        doc["text"] = {"format": {"type": "json_schema", "name": req.json_schema.get("name", "answer"),
                                  "schema": req.json_schema.get("schema") or {}, "strict": True}}
    elif req.json_object:
        doc["text"] = {"format": {"type": "json_object"}}
    effort = req.reasoning_effort or _effort(req.reasoning_budget)
    if effort:
        doc["reasoning"] = {"effort": effort}
    return doc


def _effort(budget: int | None) -> str | None:
    if not budget:
        return None
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def read_answer(doc: dict[str, Any]) -> ChatAnswer:
    parts: list[Part] = []
    for item in doc.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            parts.extend(p for p in _content(item.get("content")) if isinstance(p, Text))
        elif kind == "function_call":
            parts.append(ToolCall(str(item.get("call_id", "")), str(item.get("name", "")),
                                  str(item.get("arguments") or "{}")))
        elif kind == "reasoning":
            text = "".join(str(s.get("text", "")) for s in item.get("summary") or [] if isinstance(s, dict))
            parts.append(Thinking(text, str(item.get("encrypted_content") or "")))
    usage = doc.get("usage") or {}
    cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
    incomplete = (doc.get("incomplete_details") or {}).get("reason")
    reason = "length" if incomplete == "max_output_tokens" else "content_filter" if incomplete == "content_filter" \
        else "tool_calls" if any(isinstance(p, ToolCall) for p in parts) else "stop"
    return ChatAnswer(str(doc.get("id", "")), str(doc.get("model", "")), tuple(parts), reason,
                      int(usage.get("input_tokens") or 0) - cached, int(usage.get("output_tokens") or 0), cached, 0,
                      int((usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0))


def write_answer(answer: ChatAnswer, created: int = 0) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    for i, p in enumerate(answer.parts):
        if isinstance(p, Thinking):
            output.append({"type": "reasoning", "id": f"{TRANSLATED_REASONING}{i}", "summary": [{"type": "summary_text",
                                                                               "text": p.text}]})
        elif isinstance(p, Text):
            output.append({"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": p.text, "annotations": []}]})
        elif isinstance(p, ToolCall):
            output.append({"type": "function_call", "id": f"fc_{i}", "call_id": p.id, "name": p.name,
                           "arguments": p.arguments, "status": "completed"})
    prompt = answer.input_tokens + answer.cache_read_tokens + answer.cache_write_tokens
    doc: dict[str, Any] = {
        "id": answer.id, "object": "response", "created_at": created, "model": answer.model,
        "status": "incomplete" if answer.stop_reason in ("length", "content_filter") else "completed",
        "output": output,
        "usage": {"input_tokens": prompt, "output_tokens": answer.output_tokens,
                  "total_tokens": prompt + answer.output_tokens,
                  "input_tokens_details": {"cached_tokens": answer.cache_read_tokens},
                  "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens}}}
    if doc["status"] == "incomplete":
        doc["incomplete_details"] = {"reason": "max_output_tokens" if answer.stop_reason == "length"
                                     else "content_filter"}
    return doc
