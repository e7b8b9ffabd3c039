"""OpenAI Chat Completions ⇄ the internal representation: requests, answers and streams. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from extproc.formats import errors
from extproc.translate.ir import (
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
    check_translatable,
    data_url,
    parse_data_url,
)
from extproc.translate.stream import EventReader, failure, position, sse

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


# ---------------------------------------------------------------- its stream, event by event

_STREAM_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


class OpenAIChatReader(EventReader):
    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._calls: set[int] = set()
        self._finish = Finish()
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done or self.done_marker

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(str(doc.get("id", "")), str(doc.get("model", ""))))
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out.append(ThinkingDelta(str(delta["reasoning_content"])))
            if delta.get("content"):
                out.append(TextDelta(str(delta["content"])))
            for call in delta.get("tool_calls") or []:
                index, fn = position(call.get("index")), call.get("function") or {}
                if index not in self._calls:
                    self._calls.add(index)
                    out.append(CallStart(index, str(call.get("id") or f"call_{index}"), str(fn.get("name", ""))))
                if fn.get("arguments"):
                    out.append(CallDelta(index, str(fn["arguments"])))
            if choice.get("finish_reason"):
                self._done = True
                self._finish = Finish(_STREAM_FINISH.get(str(choice["finish_reason"]), "stop"))
        usage = doc.get("usage")
        if isinstance(usage, dict):
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            self._finish = Finish(self._finish.stop_reason, int(usage.get("prompt_tokens") or 0) - cached,
                                  int(usage.get("completion_tokens") or 0), cached)
        return out

    def _end(self) -> list[Event]:
        self.finished = True
        return [self._finish]


@dataclass
class OpenAIChatWriter:
    include_usage: bool = False  # the client asked for stream_options.include_usage
    model: str = ""
    _id: str = "chatcmpl-translated"
    _tools: dict[int, int] = field(default_factory=dict)

    def write(self, events: list[Event]) -> bytes:
        out = []
        for e in events:
            if isinstance(e, Start):
                self._id, self.model = e.id or self._id, self.model or e.model
                out.append(self._chunk({"role": "assistant", "content": ""}))
            elif isinstance(e, TextDelta):
                out.append(self._chunk({"content": e.text}))
            elif isinstance(e, ThinkingDelta):
                out.append(self._chunk({"reasoning_content": e.text}))
            elif isinstance(e, CallStart):
                self._tools[e.index] = len(self._tools)
                out.append(self._chunk({"tool_calls": [{"index": self._tools[e.index], "id": e.id, "type": "function",
                                                        "function": {"name": e.name, "arguments": ""}}]}))
            elif isinstance(e, CallDelta):
                out.append(self._chunk({"tool_calls": [{"index": self._tools.get(e.index, 0),
                                                        "function": {"arguments": e.arguments}}]}))
            elif isinstance(e, Failed):
                out.append(errors.openai_stream_error(failure(e), "chat"))
            elif isinstance(e, Finish):
                out.append(self._chunk({}, finish=e.stop_reason))
                if self.include_usage:
                    prompt = e.input_tokens + e.cache_read_tokens + e.cache_write_tokens
                    out.append(sse({"id": self._id, "object": "chat.completion.chunk", "created": 0,
                                     "model": self.model, "choices": [], "usage": {
                                         "prompt_tokens": prompt, "completion_tokens": e.output_tokens,
                                         "total_tokens": prompt + e.output_tokens,
                                         "prompt_tokens_details": {"cached_tokens": e.cache_read_tokens}}}))
                out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"id": self._id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
