"""OpenAI Responses ⇄ the internal representation: requests, answers and streams. Pure.

`previous_response_id` and stored conversations are state the provider holds: such a request cannot be
rebuilt for another API (it is `untranslatable`). Encrypted reasoning items likewise stay with their
provider: they are left out of a request written for another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extproc.translate.ir import (
    CUT,
    TRANSLATED_REASONING,
    CallDelta,
    CallStart,
    ChatAnswer,
    ChatRequest,
    Event,
    Failed,
    Finish,
    Image,
    Message,
    Part,
    Start,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolResult,
    Unsupported,
    check_translatable,
    data_url,
    parse_data_url,
)
from extproc.translate.stream import EventReader, failure, position, sse


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


# ---------------------------------------------------------------- its stream, event by event

_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesReader(EventReader):
    """OpenAI's Responses stream: typed events, items addressed by `output_index`."""

    def __init__(self) -> None:
        super().__init__()
        self._call_of: dict[int, int] = {}  # an item's output_index → its call's index
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        kind = str(doc.get("type", name))
        if kind == "response.created":
            response = doc.get("response") or {}
            return [Start(str(response.get("id", "")), str(response.get("model", "")))]
        if kind == "response.output_text.delta":
            return [TextDelta(str(doc.get("delta", "")))]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [ThinkingDelta(str(doc.get("delta", "")))]
        if kind == "response.output_item.added":
            item = doc.get("item") or {}
            if item.get("type") != "function_call":
                return []
            index = self._call_of[position(doc.get("output_index"))] = len(self._call_of)
            out: list[Event] = [CallStart(index, str(item.get("call_id", "")), str(item.get("name", "")))]
            if item.get("arguments"):
                out.append(CallDelta(index, str(item["arguments"])))
            return out
        if kind == "response.function_call_arguments.delta":
            call = self._call_of.get(position(doc.get("output_index")))
            return [] if call is None else [CallDelta(call, str(doc.get("delta", "")))]
        if kind == "response.failed":
            error = (doc.get("response") or {}).get("error") or {}
            self.finished = True
            return [Failed(str(error.get("message") or CUT) if isinstance(error, dict) else CUT)]
        if kind in ("response.completed", "response.incomplete"):
            response = doc.get("response") or {}
            usage = response.get("usage") or {}
            cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
            reason = _INCOMPLETE.get(str((response.get("incomplete_details") or {}).get("reason")), "stop")
            if reason == "stop" and self._call_of:
                reason = "tool_calls"
            self._done = self.finished = True
            return [Finish(reason, int(usage.get("input_tokens") or 0) - cached, int(usage.get("output_tokens") or 0),
                           cached)]
        return []


# An output item made of text parts: where its parts are, the events that close its text and its part, and the
# field that says which part.
_TEXT_PARTS = {
    "message": ("content", "response.output_text.done", "response.content_part.done", "content_index"),
    "reasoning": ("summary", "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                  "summary_index"),
}


@dataclass
class ResponsesWriter:
    """The Responses stream: every item opened (`output_item.added`), filled by deltas and closed
    (`output_item.done`, with the whole item, which Codex keeps as history), then `response.completed` with the
    whole response (the SDKs' final answer)."""

    model: str = ""
    _id: str = "resp_translated"
    _items: list[dict[str, Any]] = field(default_factory=list)  # the output so far, as the final answer has it
    _open: set[int] = field(default_factory=set)  # output indexes of items not closed yet
    _text: int | None = None  # the open message or reasoning item's output index
    _calls: dict[int, int] = field(default_factory=dict)  # a call's index → its item's output index
    _sequence: int = 0
    _started: bool = False

    def write(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Start):
                self._id, self.model, self._started = e.id or self._id, self.model or e.model, True
                out.append(self._event("response.created", response=self._response("in_progress")))
                out.append(self._event("response.in_progress", response=self._response("in_progress")))
            elif isinstance(e, TextDelta | ThinkingDelta):
                kind = "message" if isinstance(e, TextDelta) else "reasoning"
                if self._text is None or self._items[self._text]["type"] != kind:
                    if self._text is not None:  # calls stay open: their arguments may still come
                        out.extend(self._close(self._text))
                    out.extend(self._open_text(kind))
                index = self._text
                assert index is not None
                item = self._items[index]
                if kind == "message":
                    item["content"][0]["text"] += e.text
                    out.append(self._event("response.output_text.delta", item_id=item["id"], output_index=index,
                                           content_index=0, delta=e.text))
                else:
                    item["summary"][0]["text"] += e.text
                    out.append(self._event("response.reasoning_summary_text.delta", item_id=item["id"],
                                           output_index=index, summary_index=0, delta=e.text))
            elif isinstance(e, CallStart):
                if self._text is not None:
                    out.extend(self._close(self._text))
                index = self._calls[e.index] = len(self._items)
                item = {"type": "function_call", "id": f"fc_{index}", "call_id": e.id, "name": e.name,
                        "arguments": "", "status": "in_progress"}
                self._items.append(item)
                self._open.add(index)
                out.append(self._event("response.output_item.added", output_index=index, item=dict(item)))
            elif isinstance(e, CallDelta):
                index = self._calls.get(e.index, -1)
                if index in self._open:
                    self._items[index]["arguments"] += e.arguments
                    out.append(self._event("response.function_call_arguments.delta", item_id=f"fc_{index}",
                                           output_index=index, delta=e.arguments))
            elif isinstance(e, Failed):
                if not self._started:  # the SDKs want the response created before it can fail
                    out.append(self._event("response.created", response=self._response("in_progress")))
                error = failure(e)
                response = {**self._response("failed"), "error": {"code": error.kind, "message": error.message}}
                out.append(self._event("response.failed", response=response))
            elif isinstance(e, Finish):
                out.extend(self._close_all())
                incomplete = e.stop_reason in ("length", "content_filter")
                response = self._response("incomplete" if incomplete else "completed")
                prompt = e.input_tokens + e.cache_read_tokens + e.cache_write_tokens
                response["usage"] = {"input_tokens": prompt, "output_tokens": e.output_tokens,
                                     "total_tokens": prompt + e.output_tokens,
                                     "input_tokens_details": {"cached_tokens": e.cache_read_tokens},
                                     "output_tokens_details": {"reasoning_tokens": 0}}
                if incomplete:
                    response["incomplete_details"] = {
                        "reason": "max_output_tokens" if e.stop_reason == "length" else "content_filter"}
                out.append(self._event("response.incomplete" if incomplete else "response.completed",
                                       response=response))
        return b"".join(out)

    def _open_text(self, kind: str) -> list[bytes]:
        index = self._text = len(self._items)
        self._open.add(index)
        if kind == "message":
            item: dict[str, Any] = {"type": "message", "id": f"msg_{index}", "role": "assistant",
                                    "status": "in_progress", "content": []}
            part = {"type": "output_text", "text": "", "annotations": []}
            head = self._event("response.output_item.added", output_index=index, item=dict(item))
            added = self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                content_index=0, part=dict(part))
            item["content"] = [part]
        else:
            item = {"type": "reasoning", "id": f"{TRANSLATED_REASONING}{index}", "summary": []}
            part = {"type": "summary_text", "text": ""}
            head = self._event("response.output_item.added", output_index=index, item=dict(item))
            added = self._event("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                                summary_index=0, part=dict(part))
            item["summary"] = [part]
        self._items.append(item)
        return [head, added]

    def _close(self, index: int) -> list[bytes]:
        if index not in self._open:
            return []
        self._open.discard(index)
        if index == self._text:
            self._text = None
        item = self._items[index]
        out = []
        texts = _TEXT_PARTS.get(item["type"])
        if texts is not None:
            field, text_done, part_done, position = texts
            part = item[field][0]
            out.append(self._event(text_done, item_id=item["id"], output_index=index, **{position: 0},
                                   text=part["text"]))
            out.append(self._event(part_done, item_id=item["id"], output_index=index, **{position: 0}, part=part))
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   arguments=item["arguments"]))
        if "status" in item:
            item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def _close_all(self) -> list[bytes]:
        return [chunk for index in sorted(self._open) for chunk in self._close(index)]

    def _response(self, status: str) -> dict[str, Any]:
        return {"id": self._id, "object": "response", "created_at": 0, "model": self.model, "status": status,
                "output": list(self._items) if status != "in_progress" else [], "usage": None, "error": None,
                "incomplete_details": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}

    def _event(self, kind: str, **body: Any) -> bytes:
        self._sequence += 1
        return sse({"type": kind, "sequence_number": self._sequence, **body}, kind)
