"""Streamed answers translated event by event: a provider's stream → internal events → the client's stream.

Readers take raw chunks (split at any byte: `EventSplitter` holds a partial event) and give events as soon as
each provider event is whole, so the client's first byte is as early as without translation. Writers turn
events into the client API's own stream, with the framing (block starts and stops, the final usage) it needs.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.core.errors import ClientError
from extproc.formats import errors
from extproc.formats.gemini import unwrapped
from extproc.formats.sse import EventSplitter, fields
from extproc.translate.gemini import signed
from extproc.translate.ir import TRANSLATED, TRANSLATED_REASONING


@dataclass(frozen=True, slots=True)
class Start:
    id: str
    model: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int  # the call's place among this answer's tool calls
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass(frozen=True, slots=True)
class Finish:
    stop_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider's stream ended before its answer did (a cut, or its own error event)."""

    message: str = ""

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message", CUT)


CUT = "The provider's stream ended before the answer was complete."

Event = Start | TextDelta | ThinkingDelta | CallStart | CallDelta | Finish | Failed


def _index(value: Any) -> int:
    """A position the provider gave (a block's, a call's, an item's); anything but a number counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Reader:
    """Splits the provider's stream into its events; subclasses turn each into internal events."""

    def __init__(self) -> None:
        self._events = EventSplitter()
        self.finished = False
        self.done_marker = False

    def feed(self, chunk: bytes, end: bool = False) -> list[Event]:
        out: list[Event] = []
        for raw in self._events.feed(chunk, end):
            if self.finished:
                break  # after the answer's end, or the provider's error event, nothing more is read
            name, data = fields(raw)
            if data == b"[DONE]":
                self.done_marker = True  # OpenAI's own end of stream
                continue
            if not data:
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                if name == "error" or doc.get("type") == "error" or isinstance(doc.get("error"), dict):
                    error = doc.get("error")
                    message = error.get("message") if isinstance(error, dict) else doc.get("message")
                    self.finished = True  # the provider's own error event: nothing is made up after it
                    out.append(Failed(str(message or CUT)))
                    continue
                out.extend(self._read(name, doc))
        if end and not self.finished:
            out.extend(self._end() if self.complete else [Failed()])
            self.finished = True
        return out

    @property
    def complete(self) -> bool:
        """Whether the provider said how its answer ended (a stream without that was cut)."""
        return True

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        raise NotImplementedError

    def _end(self) -> list[Event]:
        self.finished = True
        return [Finish()]


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


class OpenAIChatReader(_Reader):
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
                index, fn = _index(call.get("index")), call.get("function") or {}
                if index not in self._calls:
                    self._calls.add(index)
                    out.append(CallStart(index, str(call.get("id") or f"call_{index}"), str(fn.get("name", ""))))
                if fn.get("arguments"):
                    out.append(CallDelta(index, str(fn["arguments"])))
            if choice.get("finish_reason"):
                self._done = True
                self._finish = Finish(_OPENAI_FINISH.get(str(choice["finish_reason"]), "stop"))
        usage = doc.get("usage")
        if isinstance(usage, dict):
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
            self._finish = Finish(self._finish.stop_reason, int(usage.get("prompt_tokens") or 0) - cached,
                                  int(usage.get("completion_tokens") or 0), cached)
        return out

    def _end(self) -> list[Event]:
        self.finished = True
        return [self._finish]


_ANTHROPIC_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                   "refusal": "content_filter"}


class AnthropicReader(_Reader):
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
            block, index = doc.get("content_block") or {}, _index(doc.get("index"))
            self._kinds[index] = str(block.get("type"))
            if block.get("type") == "tool_use":
                self._call_of[index] = len(self._call_of)
                return [CallStart(self._call_of[index], str(block.get("id", "")), str(block.get("name", "")))]
            if block.get("type") == "text" and block.get("text"):
                return [TextDelta(str(block["text"]))]
            return []
        if kind == "content_block_delta":
            delta, index = doc.get("delta") or {}, _index(doc.get("index"))
            if delta.get("type") == "text_delta":
                return [TextDelta(str(delta.get("text", "")))]
            if delta.get("type") == "thinking_delta":
                return [ThinkingDelta(str(delta.get("thinking", "")))]
            if delta.get("type") == "input_json_delta" and index in self._call_of:
                return [CallDelta(self._call_of[index], str(delta.get("partial_json", "")))]
            return []
        if kind == "message_delta":
            self._stop = _ANTHROPIC_STOP.get(str((doc.get("delta") or {}).get("stop_reason")), self._stop)
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


_GEMINI_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


class GeminiReader(_Reader):
    def __init__(self, model: str = "") -> None:
        super().__init__()
        self._model = model
        self._started = False
        self._calls = 0
        self._finish = Finish()
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        doc = unwrapped(doc)
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(str(doc.get("responseId", "")), str(doc.get("modelVersion") or self._model)))
        stop = self._finish.stop_reason
        for candidate in (doc.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "text" in part:
                    text = str(part["text"])
                    out.append(ThinkingDelta(text) if part.get("thought") else TextDelta(text))
                elif "functionCall" in part:
                    fn = part["functionCall"] or {}
                    index, self._calls = self._calls, self._calls + 1
                    out.append(CallStart(index, str(fn.get("id") or f"call_{index}_{fn.get('name', '')}"),
                                         str(fn.get("name", ""))))
                    out.append(CallDelta(index, orjson.dumps(fn.get("args") or {}).decode()))
                    stop = "tool_calls"
            if candidate.get("finishReason"):
                self._done = True
                if stop != "tool_calls":
                    stop = _GEMINI_FINISH.get(str(candidate["finishReason"]), "stop")
        meta = doc.get("usageMetadata")
        if isinstance(meta, dict):  # each chunk reports the answer so far: the last one counts
            cached = int(meta.get("cachedContentTokenCount") or 0)
            self._finish = Finish(stop, int(meta.get("promptTokenCount") or 0) - cached,
                                  int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0),
                                  cached)
        else:
            self._finish = Finish(stop, self._finish.input_tokens, self._finish.output_tokens,
                                  self._finish.cache_read_tokens)
        return out

    def _end(self) -> list[Event]:
        self.finished = True
        return [self._finish]


_RESPONSES_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesReader(_Reader):
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
            index = self._call_of[_index(doc.get("output_index"))] = len(self._call_of)
            out: list[Event] = [CallStart(index, str(item.get("call_id", "")), str(item.get("name", "")))]
            if item.get("arguments"):
                out.append(CallDelta(index, str(item["arguments"])))
            return out
        if kind == "response.function_call_arguments.delta":
            call = self._call_of.get(_index(doc.get("output_index")))
            return [] if call is None else [CallDelta(call, str(doc.get("delta", "")))]
        if kind == "response.failed":
            error = (doc.get("response") or {}).get("error") or {}
            self.finished = True
            return [Failed(str(error.get("message") or CUT) if isinstance(error, dict) else CUT)]
        if kind in ("response.completed", "response.incomplete"):
            response = doc.get("response") or {}
            usage = response.get("usage") or {}
            cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
            reason = _RESPONSES_INCOMPLETE.get(str((response.get("incomplete_details") or {}).get("reason")), "stop")
            if reason == "stop" and self._call_of:
                reason = "tool_calls"
            self._done = self.finished = True
            return [Finish(reason, int(usage.get("input_tokens") or 0) - cached, int(usage.get("output_tokens") or 0),
                           cached)]
        return []


# ---------------------------------------------------------------- writers: the client's stream


def _failure(failed: Failed) -> ClientError:
    return ClientError(502, "upstream_stream_failed", failed.message)


def _sse(doc: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(doc) + b"\n\n"


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
                out.append(errors.openai_stream_error(_failure(e), "chat"))
            elif isinstance(e, Finish):
                out.append(self._chunk({}, finish=e.stop_reason))
                if self.include_usage:
                    prompt = e.input_tokens + e.cache_read_tokens + e.cache_write_tokens
                    out.append(_sse({"id": self._id, "object": "chat.completion.chunk", "created": 0,
                                     "model": self.model, "choices": [], "usage": {
                                         "prompt_tokens": prompt, "completion_tokens": e.output_tokens,
                                         "total_tokens": prompt + e.output_tokens,
                                         "prompt_tokens_details": {"cached_tokens": e.cache_read_tokens}}}))
                out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({"id": self._id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                      "content_filter": "refusal"}


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
                out.append(_sse({"type": "message_start", "message": {
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
                out.append(_sse({"type": "content_block_delta", "index": self._index, "delta": delta},
                                "content_block_delta"))
            elif isinstance(e, CallStart):
                out.extend(self._start({"type": "tool_use", "id": e.id, "name": e.name, "input": {}}))
                self._calls[e.index] = self._index
            elif isinstance(e, CallDelta):
                out.append(_sse({"type": "content_block_delta", "index": self._calls.get(e.index, self._index),
                                 "delta": {"type": "input_json_delta", "partial_json": e.arguments}},
                                "content_block_delta"))
            elif isinstance(e, Failed):
                out.extend(self._stop())
                out.append(errors.anthropic_stream_error(_failure(e), "messages"))
            elif isinstance(e, Finish):
                out.extend(self._stop())
                out.append(_sse({"type": "message_delta", "delta": {
                    "stop_reason": _TO_ANTHROPIC_STOP.get(e.stop_reason, "end_turn"), "stop_sequence": None},
                    "usage": {"input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
                              "cache_read_input_tokens": e.cache_read_tokens,
                              "cache_creation_input_tokens": e.cache_write_tokens}}, "message_delta"))
                out.append(_sse({"type": "message_stop"}, "message_stop"))
        return b"".join(out)

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        out = self._stop()
        self._index += 1
        self._open = str(block["type"])
        return [*out, _sse({"type": "content_block_start", "index": self._index, "content_block": block},
                           "content_block_start")]

    def _stop(self) -> list[bytes]:
        if self._open is None:
            return []
        out = []
        if self._open == "thinking":  # another provider's thinking: signed as ours, never sent back to Anthropic
            out.append(_sse({"type": "content_block_delta", "index": self._index, "delta": {
                "type": "signature_delta", "signature": TRANSLATED}}, "content_block_delta"))
        self._open = None
        return [*out, _sse({"type": "content_block_stop", "index": self._index}, "content_block_stop")]


_TO_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


@dataclass
class GeminiWriter:
    """Gemini's stream (`alt=sse`): every event a whole GenerateContentResponse; a call goes out whole, once its
    arguments are (Gemini has no argument fragments)."""

    model: str = ""
    _calls: dict[int, list[str]] = field(default_factory=dict)  # index → name, then argument fragments

    def write(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Start):
                self.model = self.model or e.model
            elif isinstance(e, TextDelta | ThinkingDelta):
                part: dict[str, Any] = {"text": e.text}
                if isinstance(e, ThinkingDelta):
                    part["thought"] = True
                out.append(self._chunk([part]))
            elif isinstance(e, CallStart):
                self._calls[e.index] = [e.name]
            elif isinstance(e, CallDelta):
                self._calls.setdefault(e.index, [""]).append(e.arguments)
            elif isinstance(e, Failed):
                out.append(errors.gemini_stream_error(_failure(e), "gemini"))
            elif isinstance(e, Finish):
                calls = []
                for name, *fragments in self._calls.values():
                    try:
                        args = orjson.loads("".join(fragments) or "{}")
                    except orjson.JSONDecodeError:
                        args = {}
                    calls.append({"functionCall": {"name": name, "args": args}})
                signed(calls)
                prompt = e.input_tokens + e.cache_read_tokens
                out.append(self._chunk(calls, finish=_TO_GEMINI_FINISH.get(e.stop_reason, "STOP"), usage={
                    "promptTokenCount": prompt, "candidatesTokenCount": e.output_tokens,
                    "cachedContentTokenCount": e.cache_read_tokens, "totalTokenCount": prompt + e.output_tokens}))
        return b"".join(out)

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None,
               usage: dict[str, int] | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        doc: dict[str, Any] = {"candidates": [candidate], "modelVersion": self.model}
        if usage:
            doc["usageMetadata"] = usage
        return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"


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
                failure = _failure(e)
                response = {**self._response("failed"), "error": {"code": failure.kind, "message": failure.message}}
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
        if item["type"] == "message":
            part = item["content"][0]
            out.append(self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                   content_index=0, text=part["text"]))
            out.append(self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                   content_index=0, part=part))
        elif item["type"] == "reasoning":
            part = item["summary"][0]
            out.append(self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                                   summary_index=0, text=part["text"]))
            out.append(self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                                   summary_index=0, part=part))
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
        return _sse({"type": kind, "sequence_number": self._sequence, **body}, kind)


Reader = OpenAIChatReader | AnthropicReader | GeminiReader | ResponsesReader
Writer = OpenAIChatWriter | AnthropicWriter | GeminiWriter | ResponsesWriter


@dataclass
class StreamTranslator:
    """The provider's stream in, the client's out: one per streamed answer (it holds split events)."""

    collects, failed_status = False, None  # a stream stays a stream; a failure is an event in it
    reader: Reader
    writer: Writer
    on_finish: Callable[[Finish], None] | None = None

    def feed(self, chunk: bytes, end: bool = False) -> bytes:
        events = self.reader.feed(chunk, end)
        if self.on_finish is not None:
            for e in events:
                if isinstance(e, Finish):
                    self.on_finish(e)
        return self.writer.write(events)
