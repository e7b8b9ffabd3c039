"""Translation as a transform of the request path: the client's request rewritten in the provider's API, and
the provider's answer (whole, streamed, or an error) rewritten back in the client's.

It runs where every other transform does, on each attempt that needs it: an untranslated request never
touches this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from extproc.core.errors import ClientError
from extproc.core.providers import TRANSLATED_ENDPOINTS_OF
from extproc.formats.sse import EventSplitter, fields
from extproc.translate import anthropic, gemini, openai_chat, responses, stream
from extproc.translate.ir import ChatAnswer, ChatRequest, Part, Text, Thinking, ToolCall, Unsupported

JsonObject = dict[str, Any]


def read_request(endpoint: str, doc: JsonObject, model: str, streams: bool) -> ChatRequest:
    if endpoint == "messages":
        ir = anthropic.read_request(doc)
    elif endpoint == "gemini":
        ir = replace(gemini.read_request(doc, model), stream=streams)  # Gemini streams by path, not body
    elif endpoint == "responses":
        ir = responses.read_request(doc)
    else:
        ir = openai_chat.read_request(doc)
    return replace(ir, model=model)


def write_request(endpoint: str, ir: ChatRequest) -> tuple[JsonObject, str]:
    """The provider's body, and its path after the API prefix."""
    if endpoint == "messages":
        return anthropic.write_request(ir), "/messages"
    if endpoint == "gemini":
        method = ":streamGenerateContent?alt=sse" if ir.stream else ":generateContent"
        return gemini.write_request(ir), f"/v1beta/models/{ir.model}{method}"  # Gemini keeps its version in the path
    if endpoint == "responses":
        return responses.write_request(ir), "/responses"
    return openai_chat.write_request(ir), "/chat/completions"


def translatable(endpoint: str, doc: JsonObject, model: str, streams: bool, target: str,
                 query: str = "") -> str | None:
    """Why a request cannot be written for `target` (None: it can)."""
    if streams and endpoint == "gemini" and "alt=sse" not in query.split("&"):
        return "a Gemini stream as a JSON array (ask with alt=sse)"
    try:
        write_request(target, read_request(endpoint, doc, model, streams))
    except Unsupported as exc:
        return str(exc)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError, OverflowError):
        return "a field of the request is not in the shape its API defines"
    return None


def read_answer(endpoint: str, doc: JsonObject, model: str) -> ChatAnswer:
    if endpoint == "messages":
        return anthropic.read_answer(doc)
    if endpoint == "gemini":
        return gemini.read_answer(doc, model)
    if endpoint == "responses":
        return responses.read_answer(doc)
    return openai_chat.read_answer(doc)


def write_answer(endpoint: str, answer: ChatAnswer) -> JsonObject:
    if endpoint == "messages":
        return anthropic.write_answer(answer)
    if endpoint == "gemini":
        return gemini.write_answer(answer)
    if endpoint == "responses":
        return responses.write_answer(answer)
    return openai_chat.write_answer(answer)


def error_message(doc: Any) -> str:
    """The message of any API's error envelope."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return "The provider refused the request."


class WholeAnswer:
    """A buffered answer: translated once, whole; an error keeps its status and moves to the client's envelope."""

    collects, failed_status = False, None

    def __init__(self, source: str, target: str, model: str, status: int,
                 render_error: Callable[[ClientError], bytes]) -> None:
        self._source, self._target, self._model, self._status = source, target, model, status
        self._render_error = render_error

    def feed(self, chunk: bytes, end: bool) -> bytes:
        try:
            doc = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            doc = None
        if self._status >= 400 or not isinstance(doc, dict):
            kind = "upstream_error" if self._status >= 400 else "upstream_invalid_answer"
            return self._render_error(ClientError(self._status if self._status >= 400 else 502, kind,
                                                  error_message(doc)))
        return orjson.dumps(write_answer(self._source, read_answer(self._target, doc, self._model)))


_READERS: dict[str, Callable[[str], stream.Reader]] = {
    "chat": lambda model: stream.OpenAIChatReader(), "messages": lambda model: stream.AnthropicReader(),
    "gemini": stream.GeminiReader, "responses": lambda model: stream.ResponsesReader(),
}


def stream_translator(source: str, target: str, model: str, include_usage: bool) -> stream.StreamTranslator:
    if target not in _READERS or source not in _READERS:
        raise Unsupported(f"streaming between {target} and {source}")
    writer: stream.Writer = stream.OpenAIChatWriter(include_usage, model) if source == "chat" else \
        stream.AnthropicWriter(model) if source == "messages" else \
        stream.ResponsesWriter(model) if source == "responses" else stream.GeminiWriter(model)
    return stream.StreamTranslator(_READERS[target](model), writer)


class CollectedAnswer:
    """A provider that only streams (ChatGPT's Codex backend), asked for a whole answer: its stream is read to
    the end and the client gets one answer in its own API (or its error envelope, if the stream failed)."""

    collects = True  # the client gets JSON, once, at the end

    def __init__(self, source: str, target: str, model: str, render_error: Callable[[ClientError], bytes]) -> None:
        self._source, self._model, self._render_error = source, model, render_error
        self.failed_status: int | None = None  # the stream failed: the client's answer is this error
        self._reader = _READERS[target](model)
        self._id, self._served = "", model
        self._parts: list[Part | int] = []  # a tool call stands as its index until its arguments are whole
        self._calls: dict[int, list[str]] = {}  # index → id, name, then argument fragments

    def feed(self, chunk: bytes, end: bool) -> bytes:
        for e in self._reader.feed(chunk, end):
            if isinstance(e, stream.Start):
                self._id, self._served = e.id, e.model or self._model
            elif isinstance(e, stream.TextDelta | stream.ThinkingDelta):
                kind = Text if isinstance(e, stream.TextDelta) else Thinking
                last = self._parts[-1] if self._parts else None
                if isinstance(last, Text | Thinking) and type(last) is kind:
                    self._parts[-1] = kind(last.text + e.text)
                else:
                    self._parts.append(kind(e.text))
            elif isinstance(e, stream.CallStart):
                self._calls[e.index] = [e.id, e.name]
                self._parts.append(e.index)
            elif isinstance(e, stream.CallDelta) and e.index in self._calls:
                self._calls[e.index].append(e.arguments)
            elif isinstance(e, stream.Failed):
                self.failed_status = 502
                return self._render_error(ClientError(502, "upstream_stream_failed", e.message))
            elif isinstance(e, stream.Finish):
                parts = tuple(p if not isinstance(p, int) else
                              ToolCall(self._calls[p][0], self._calls[p][1], "".join(self._calls[p][2:]) or "{}")
                              for p in self._parts)
                answer = ChatAnswer(self._id, self._served, parts, e.stop_reason, e.input_tokens, e.output_tokens,
                                    e.cache_read_tokens, e.cache_write_tokens)
                return orjson.dumps(write_answer(self._source, answer))
        return b""


API_OF = {endpoint: api for api, endpoints in TRANSLATED_ENDPOINTS_OF.items() for endpoint in endpoints}


class CollectedResponse:
    """A Responses client's own stream collected (a provider that only streams, asked for a whole answer): the
    answer is the provider's own final response, every item as the provider wrote it (encrypted reasoning,
    custom tools and all), not a rebuild."""

    collects = True

    def __init__(self, render_error: Callable[[ClientError], bytes]) -> None:
        self._render_error = render_error
        self._events = EventSplitter()
        self._items: list[Any] = []
        self.failed_status: int | None = None

    def feed(self, chunk: bytes, end: bool) -> bytes:
        for raw in self._events.feed(chunk, end):
            name, data = fields(raw)
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            kind = doc.get("type", name)
            response = doc.get("response")
            if kind == "response.output_item.done":
                self._items.append(doc.get("item"))
            elif kind in ("response.completed", "response.incomplete") and isinstance(response, dict):
                if not response.get("output"):
                    response["output"] = self._items
                return orjson.dumps(response)
            elif kind in ("response.failed", "error"):
                error = (response or {}).get("error") if isinstance(response, dict) else doc
                return self._fail(error_message({"error": error}))
        return self._fail(stream.CUT) if end else b""

    def _fail(self, message: str) -> bytes:
        self.failed_status = 502
        return self._render_error(ClientError(502, "upstream_stream_failed", message))
