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
from extproc.translate import anthropic, gemini, openai_chat, responses, stream
from extproc.translate.ir import ChatAnswer, ChatRequest, Unsupported

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
        return gemini.write_request(ir), f"/models/{ir.model}{method}"
    if endpoint == "responses":
        return responses.write_request(ir), "/responses"
    return openai_chat.write_request(ir), "/chat/completions"


def translatable(endpoint: str, doc: JsonObject, model: str, streams: bool, target: str,
                 query: str = "") -> str | None:
    """Why a request cannot be written for `target` (None: it can)."""
    if streams and (endpoint not in _READERS or target not in _READERS):
        return f"a stream between {endpoint} and {target} is not translated yet"
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
    "gemini": stream.GeminiReader,
}


def stream_translator(source: str, target: str, model: str, include_usage: bool) -> stream.StreamTranslator:
    if target not in _READERS or source not in _READERS:
        raise Unsupported(f"streaming between {target} and {source}")
    writer: stream.Writer = stream.OpenAIChatWriter(include_usage, model) if source == "chat" else \
        stream.AnthropicWriter(model) if source == "messages" else stream.GeminiWriter(model)
    return stream.StreamTranslator(_READERS[target](model), writer)


API_OF = {endpoint: api for api, endpoints in TRANSLATED_ENDPOINTS_OF.items() for endpoint in endpoints}
