"""Translation as a transform of the request path: the client's request rewritten in the provider's API, and
the provider's answer (whole, streamed, or an error) rewritten back in the client's.

Every API is one row of `APIS`: how its requests, answers and streams are read into the internal
representation and written from it. It runs where every other transform does, on each attempt that needs
it: an untranslated request never touches this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from extproc.core.errors import ClientError
from extproc.core.providers import TRANSLATED_ENDPOINTS_OF
from extproc.formats.sse import EventSplitter, fields
from extproc.translate import anthropic, gemini, ir, openai_chat, responses, stream
from extproc.translate.ir import ChatAnswer, ChatRequest, Part, Text, Thinking, ToolCall, Unsupported

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Translation:
    """One API's readers and writers: its request, its whole answer and its stream."""

    read_request: Callable[[JsonObject], ChatRequest]
    write_request: Callable[[ChatRequest], JsonObject]
    path: Callable[[ChatRequest], str]  # where a request written in this API goes, after the API prefix
    read_answer: Callable[[JsonObject, str], ChatAnswer]  # (the answer, the model asked for)
    write_answer: Callable[[ChatAnswer], JsonObject]
    read_stream: Callable[[str], stream.Reader]  # the model asked for → a reader of one answer's stream
    write_stream: Callable[[str, bool], stream.Writer]  # (the model asked for, include_usage) → a writer


APIS: Mapping[str, Translation] = {  # by client endpoint name
    "chat": Translation(
        openai_chat.read_request, openai_chat.write_request, lambda req: "/chat/completions",
        lambda doc, model: openai_chat.read_answer(doc), openai_chat.write_answer,
        lambda model: openai_chat.OpenAIChatReader(), lambda model, usage: openai_chat.OpenAIChatWriter(usage, model)),
    "responses": Translation(
        responses.read_request, responses.write_request, lambda req: "/responses",
        lambda doc, model: responses.read_answer(doc), responses.write_answer,
        lambda model: responses.ResponsesReader(), lambda model, usage: responses.ResponsesWriter(model)),
    "messages": Translation(
        anthropic.read_request, anthropic.write_request, lambda req: "/messages",
        lambda doc, model: anthropic.read_answer(doc), anthropic.write_answer,
        lambda model: anthropic.AnthropicReader(), lambda model, usage: anthropic.AnthropicWriter(model)),
    "gemini": Translation(
        gemini.read_request, gemini.write_request, gemini.path, gemini.read_answer, gemini.write_answer,
        gemini.GeminiReader, lambda model, usage: gemini.GeminiWriter(model)),
}

API_OF = {endpoint: api for api, endpoints in TRANSLATED_ENDPOINTS_OF.items() for endpoint in endpoints}


def read_request(endpoint: str, doc: JsonObject, model: str, streams: bool) -> ChatRequest:
    """The client's request in the internal representation, for `model` (whether it streams is the request's
    own: in the body, or Gemini's path)."""
    return replace(APIS[endpoint].read_request(doc), model=model, stream=streams)


def write_request(endpoint: str, req: ChatRequest) -> tuple[JsonObject, str]:
    """The provider's body, and its path after the API prefix."""
    api = APIS[endpoint]
    return api.write_request(req), api.path(req)


_MISSHAPEN = (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError, OverflowError)


class TranslationCheck:
    """Whether one request can be written in each target API: read once, however many targets are asked about,
    and written for each (the writer is what knows what its API cannot say)."""

    def __init__(self, endpoint: str, doc: JsonObject, streams: bool, query: str = "") -> None:
        self._endpoint, self._doc, self._streams, self._query = endpoint, doc, streams, query
        self._read: ChatRequest | str | None = None  # the request read, or why it cannot be

    def refusal(self, target: str, model: str) -> str | None:
        """Why the request cannot be written for `target` (None: it can)."""
        if self._streams and self._endpoint == "gemini" and "alt=sse" not in self._query.split("&"):
            return "a Gemini stream as a JSON array (ask with alt=sse)"
        if self._read is None:
            try:
                self._read = read_request(self._endpoint, self._doc, model, self._streams)
            except _MISSHAPEN:
                self._read = _SHAPE
        if isinstance(self._read, str):
            return self._read
        try:
            APIS[target].write_request(replace(self._read, model=model))
        except Unsupported as exc:
            return str(exc)
        except _MISSHAPEN:
            return _SHAPE
        return None


_SHAPE = "a field of the request is not in the shape its API defines"


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
        answer = APIS[self._target].read_answer(doc, self._model)
        return orjson.dumps(APIS[self._source].write_answer(answer))


def stream_translator(source: str, target: str, model: str, include_usage: bool) -> stream.StreamTranslator:
    """The provider's stream (`target`'s API) read, the client's (`source`'s) written."""
    return stream.StreamTranslator(APIS[target].read_stream(model), APIS[source].write_stream(model, include_usage))


class CollectedAnswer:
    """A provider that only streams (ChatGPT's Codex backend), asked for a whole answer: its stream is read to
    the end and the client gets one answer in its own API (or its error envelope, if the stream failed)."""

    collects = True  # the client gets JSON, once, at the end

    def __init__(self, source: str, target: str, model: str, render_error: Callable[[ClientError], bytes]) -> None:
        self._source, self._model, self._render_error = source, model, render_error
        self.failed_status: int | None = None  # the stream failed: the client's answer is this error
        self._reader = APIS[target].read_stream(model)
        self._id, self._served = "", model
        self._parts: list[Part | int] = []  # a tool call stands as its index until its arguments are whole
        self._calls: dict[int, list[str]] = {}  # index → id, name, then argument fragments

    def feed(self, chunk: bytes, end: bool) -> bytes:
        for e in self._reader.feed(chunk, end):
            if isinstance(e, ir.Start):
                self._id, self._served = e.id, e.model or self._model
            elif isinstance(e, ir.TextDelta | ir.ThinkingDelta):
                kind = Text if isinstance(e, ir.TextDelta) else Thinking
                last = self._parts[-1] if self._parts else None
                if isinstance(last, Text | Thinking) and type(last) is kind:
                    self._parts[-1] = kind(last.text + e.text)
                else:
                    self._parts.append(kind(e.text))
            elif isinstance(e, ir.CallStart):
                self._calls[e.index] = [e.id, e.name]
                self._parts.append(e.index)
            elif isinstance(e, ir.CallDelta) and e.index in self._calls:
                self._calls[e.index].append(e.arguments)
            elif isinstance(e, ir.Failed):
                self.failed_status = 502
                return self._render_error(ClientError(502, "upstream_stream_failed", e.message))
            elif isinstance(e, ir.Finish):
                parts = tuple(p if not isinstance(p, int) else
                              ToolCall(self._calls[p][0], self._calls[p][1], "".join(self._calls[p][2:]) or "{}")
                              for p in self._parts)
                answer = ChatAnswer(self._id, self._served, parts, e.stop_reason, e.input_tokens, e.output_tokens,
                                    e.cache_read_tokens, e.cache_write_tokens)
                return orjson.dumps(APIS[self._source].write_answer(answer))
        return b""


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
        return self._fail(ir.CUT) if end else b""

    def _fail(self, message: str) -> bytes:
        self.failed_status = 502
        return self._render_error(ClientError(502, "upstream_stream_failed", message))
