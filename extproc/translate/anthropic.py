"""Anthropic Messages ⇄ the internal representation: requests, answers and streams. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.formats import errors
from extproc.translate.ir import (
    TRANSLATED,
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
)
from extproc.translate.stream import EventReader, failure, position, sse

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; a request from another API may not say
_EFFORT_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}  # thinking budget for an OpenAI-style effort


def _image(block: dict[str, Any]) -> Image:
    source = block.get("source") or {}
    if source.get("type") == "url":
        return Image(url=str(source.get("url", "")))
    return Image(media_type=str(source.get("media_type", "")), data=str(source.get("data", "")))


def _blocks(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for b in content or []:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            parts.append(Text(str(b.get("text", ""))))
        elif kind == "image":
            parts.append(_image(b))
        elif kind == "tool_use":
            parts.append(ToolCall(str(b.get("id", "")), str(b.get("name", "")),
                                  orjson.dumps(b.get("input") or {}).decode()))
        elif kind == "tool_result":
            inner = [p for p in _blocks(b.get("content")) if isinstance(p, (Text, Image))]
            parts.append(ToolResult(str(b.get("tool_use_id", "")), tuple(inner), is_error=bool(b.get("is_error"))))
        elif kind == "thinking":
            parts.append(Thinking(str(b.get("thinking", "")), str(b.get("signature", ""))))
    return parts


def read_request(doc: dict[str, Any]) -> ChatRequest:
    system = doc.get("system")
    texts = [system] if isinstance(system, str) else [str(b.get("text", "")) for b in system or []
                                                       if isinstance(b, dict) and b.get("type") == "text"]
    messages = tuple(Message("assistant" if m.get("role") == "assistant" else "user", tuple(_blocks(m.get("content"))))
                     for m in doc.get("messages") or [])
    tools = tuple(Tool(str(t.get("name", "")), str(t.get("description", "")), dict(t.get("input_schema") or {}))
                  for t in doc.get("tools") or [] if isinstance(t, dict) and t.get("type") in (None, "custom"))
    choice_doc = doc.get("tool_choice") or {}
    choice = {"auto": "auto", "any": "required", "none": "none"}.get(str(choice_doc.get("type"))) \
        or (choice_doc.get("name") if choice_doc.get("type") == "tool" else None)
    thinking = doc.get("thinking") or {}
    own = [f"tools of type {t.get('type')}" for t in doc.get("tools") or []
           if isinstance(t, dict) and t.get("type") not in (None, "custom")]
    return ChatRequest(
        model=str(doc.get("model", "")), messages=messages, system=tuple(t for t in texts if t), tools=tools,
        tool_choice=choice, parallel_tool_calls=False if choice_doc.get("disable_parallel_tool_use") else None,
        max_tokens=doc.get("max_tokens"), temperature=doc.get("temperature"), top_p=doc.get("top_p"),
        stop=tuple(doc.get("stop_sequences") or ()), stream=doc.get("stream") is True,
        reasoning_budget=thinking.get("budget_tokens") if thinking.get("type") == "enabled" else None,
        untranslatable=tuple(own))


def _image_out(image: Image) -> dict[str, Any]:
    source = {"type": "url", "url": image.url} if image.url else \
        {"type": "base64", "media_type": image.media_type, "data": image.data}
    return {"type": "image", "source": source}


def _arguments(call: ToolCall) -> Any:
    try:
        return orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        raise Unsupported(f"the arguments of tool call {call.id} are not JSON") from None


def _blocks_out(parts: tuple[Part, ...], keep_thinking: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, Text):
            if p.text:
                out.append({"type": "text", "text": p.text})
        elif isinstance(p, Image):
            out.append(_image_out(p))
        elif isinstance(p, ToolCall):
            out.append({"type": "tool_use", "id": p.id, "name": p.name, "input": _arguments(p)})
        elif isinstance(p, ToolResult):
            content = [{"type": "text", "text": c.text} if isinstance(c, Text) else _image_out(c) for c in p.content]
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.call_id, "content": content}
            if p.is_error:
                block["is_error"] = True
            out.append(block)
        elif isinstance(p, Thinking) and keep_thinking and p.signature:
            out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
    return out


def write_request(req: ChatRequest, keep_thinking: bool = False) -> dict[str, Any]:
    """`keep_thinking`: the request goes back to the provider that signed its thinking blocks; anywhere else
    they are left out (another provider rejects a signature it did not make)."""
    check_translatable(req)
    if req.json_schema is not None or req.json_object:
        raise Unsupported("a structured (JSON schema) answer")
    doc: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
                           "messages": [{"role": m.role, "content": _blocks_out(m.parts, keep_thinking)}
                                        for m in req.messages]}
    if req.system:
        doc["system"] = "\n\n".join(req.system)
    if req.tools:
        doc["tools"] = [{"name": t.name, "description": t.description,
                         "input_schema": t.parameters or {"type": "object"}} for t in req.tools]
    if req.tool_choice is not None:
        choice: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "none": "none"}.get(
            req.tool_choice, "tool")}
        if choice["type"] == "tool":
            choice["name"] = req.tool_choice
        if req.parallel_tool_calls is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        doc["tool_choice"] = choice
    for key, value in (("temperature", req.temperature), ("top_p", req.top_p)):
        if value is not None:
            doc[key] = value
    if req.stop:
        doc["stop_sequences"] = list(req.stop)
    if req.stream:
        doc["stream"] = True
    budget = req.reasoning_budget or _EFFORT_BUDGET.get(req.reasoning_effort or "")
    if budget:
        doc["thinking"] = {"type": "enabled", "budget_tokens": max(1024, budget)}
        doc["max_tokens"] = max(doc["max_tokens"], doc["thinking"]["budget_tokens"] + 1024)
        doc.pop("temperature", None)  # thinking takes the default temperature only
    return doc


_STOP_IN = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
            "refusal": "content_filter", "pause_turn": "stop"}
_STOP_OUT = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def read_answer(doc: dict[str, Any]) -> ChatAnswer:
    usage = doc.get("usage") or {}
    parts = tuple(p for p in _blocks(doc.get("content")) if isinstance(p, (Text, ToolCall, Thinking)))
    return ChatAnswer(str(doc.get("id", "")), str(doc.get("model", "")), parts,
                      _STOP_IN.get(str(doc.get("stop_reason")), "stop"), int(usage.get("input_tokens") or 0),
                      int(usage.get("output_tokens") or 0), int(usage.get("cache_read_input_tokens") or 0),
                      int(usage.get("cache_creation_input_tokens") or 0))


def write_answer(answer: ChatAnswer) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for p in answer.parts:
        if isinstance(p, Thinking):  # another provider's: its signature means nothing to Anthropic
            content.append({"type": "thinking", "thinking": p.text, "signature": TRANSLATED})
        elif isinstance(p, Text):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ToolCall):
            content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": _arguments(p)})
    return {"id": answer.id, "type": "message", "role": "assistant", "model": answer.model, "content": content,
            "stop_reason": _STOP_OUT.get(answer.stop_reason, "end_turn"), "stop_sequence": None,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                      "cache_read_input_tokens": answer.cache_read_tokens,
                      "cache_creation_input_tokens": answer.cache_write_tokens}}


# ---------------------------------------------------------------- its stream, event by event

_STREAM_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                   "refusal": "content_filter"}


class AnthropicReader(EventReader):
    def __init__(self) -> None:
        super().__init__()
        self._kinds: dict[int, str] = {}
        self._call_of: dict[int, int] = {}
        self._usage: dict[str, int] = {}
        self._stop = "stop"

    @property
    def complete(self) -> bool:
        return False  # a stream that ends before message_stop was cut (message_stop finishes it)

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        kind = doc.get("type", name)
        if kind == "message_start":
            message = doc.get("message") or {}
            self._take_usage(message.get("usage"))
            return [Start(str(message.get("id", "")), str(message.get("model", "")))]
        if kind == "content_block_start":
            block, index = doc.get("content_block") or {}, position(doc.get("index"))
            self._kinds[index] = str(block.get("type"))
            if block.get("type") == "tool_use":
                self._call_of[index] = len(self._call_of)
                return [CallStart(self._call_of[index], str(block.get("id", "")), str(block.get("name", "")))]
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(str(block["text"]))]
            return []
        if kind == "content_block_delta":
            delta, index = doc.get("delta") or {}, position(doc.get("index"))
            if delta.get("type") == "text_delta":
                return [TextDelta(str(delta.get("text", "")))]
            if delta.get("type") == "thinking_delta":
                return [ThinkingDelta(str(delta.get("thinking", "")))]
            if delta.get("type") == "input_json_delta" and index in self._call_of:
                return [CallDelta(self._call_of[index], str(delta.get("partial_json", "")))]
            return []
        if kind == "message_delta":
            self._stop = _STREAM_STOP.get(str((doc.get("delta") or {}).get("stop_reason")), self._stop)
            self._take_usage(doc.get("usage"))
            return []
        if kind == "message_stop":
            return self._end()
        return []

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: int(v) for k, v in usage.items() if isinstance(v, int) and v})

    def _end(self) -> list[Event]:
        if self.finished:
            return []
        self.finished = True
        u = self._usage
        return [Finish(self._stop, u.get("input_tokens", 0), u.get("output_tokens", 0),
                       u.get("cache_read_input_tokens", 0), u.get("cache_creation_input_tokens", 0))]


@dataclass
class AnthropicWriter:
    model: str = ""
    _index: int = -1
    _open: str | None = None  # the kind of the content block being written
    _calls: dict[int, int] = field(default_factory=dict)  # a call's index → its block's

    def write(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Start):
                self.model = self.model or e.model
                out.append(sse({"type": "message_start", "message": {
                    "id": e.id or "msg_translated", "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}}, "message_start"))
            elif isinstance(e, TextDelta | ThinkingDelta):
                kind = "text" if isinstance(e, TextDelta) else "thinking"
                if self._open != kind:
                    out.extend(self._start({"type": kind, kind: ""} if kind == "text"
                                           else {"type": "thinking", "thinking": "", "signature": ""}))
                delta = {"type": "text_delta", "text": e.text} if kind == "text" else \
                    {"type": "thinking_delta", "thinking": e.text}
                out.append(sse({"type": "content_block_delta", "index": self._index, "delta": delta},
                                "content_block_delta"))
            elif isinstance(e, CallStart):
                out.extend(self._start({"type": "tool_use", "id": e.id, "name": e.name, "input": {}}))
                self._calls[e.index] = self._index
            elif isinstance(e, CallDelta):
                out.append(sse({"type": "content_block_delta", "index": self._calls.get(e.index, self._index),
                                 "delta": {"type": "input_json_delta", "partial_json": e.arguments}},
                                "content_block_delta"))
            elif isinstance(e, Failed):
                out.extend(self._stop())
                out.append(errors.anthropic_stream_error(failure(e), "messages"))
            elif isinstance(e, Finish):
                out.extend(self._stop())
                out.append(sse({"type": "message_delta", "delta": {
                    "stop_reason": _STOP_OUT.get(e.stop_reason, "end_turn"), "stop_sequence": None},
                    "usage": {"input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
                              "cache_read_input_tokens": e.cache_read_tokens,
                              "cache_creation_input_tokens": e.cache_write_tokens}}, "message_delta"))
                out.append(sse({"type": "message_stop"}, "message_stop"))
        return b"".join(out)

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        out = self._stop()
        self._index += 1
        self._open = str(block["type"])
        return [*out, sse({"type": "content_block_start", "index": self._index, "content_block": block},
                           "content_block_start")]

    def _stop(self) -> list[bytes]:
        if self._open is None:
            return []
        out = []
        if self._open == "thinking":  # another provider's thinking: signed as ours, never sent back to Anthropic
            out.append(sse({"type": "content_block_delta", "index": self._index, "delta": {
                "type": "signature_delta", "signature": TRANSLATED}}, "content_block_delta"))
        self._open = None
        return [*out, sse({"type": "content_block_stop", "index": self._index}, "content_block_stop")]
