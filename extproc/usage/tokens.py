"""Token usage as each API reports it, in one shape. Pure.

`input` counts the prompt tokens read neither from nor into a cache (Anthropic's meaning; OpenAI and
Gemini count cached tokens inside their prompt figure, so they are taken out), `output` every generated
token, thinking included, and `reasoning` the thinking part of it — so a cost is a plain sum of
(count × price) with no token counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.core.providers import Api
from extproc.formats.gemini import unwrapped
from extproc.formats.sse import EventSplitter, fields


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0  # part of output

    def merged(self, later: Usage) -> Usage:
        """Two partial reports of one answer (Anthropic's message_start, then message_delta): each figure the
        later one gives wins."""
        return Usage(*(b or a for a, b in zip(self.as_tuple(), later.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return self.input, self.output, self.cache_read, self.cache_write, self.reasoning


def _count(doc: Any, *path: str) -> int:
    for key in path:
        if not isinstance(doc, dict):
            return 0
        doc = doc.get(key)
    return doc if isinstance(doc, int) and not isinstance(doc, bool) and doc > 0 else 0


def openai_usage(usage: Any) -> Usage | None:
    """Chat Completions' `prompt_tokens`/`completion_tokens`, or the Responses API's `input_tokens`/
    `output_tokens`, each with its details."""
    if not isinstance(usage, dict):
        return None
    if usage.get("input_tokens") is not None:  # a null reads as absent (as Envoy reads it: `ANSWER_USAGE_KEYS`)
        prompt, details, out_details = _count(usage, "input_tokens"), "input_tokens_details", "output_tokens_details"
        output = _count(usage, "output_tokens")
    else:
        prompt, details, out_details = _count(usage, "prompt_tokens"), "prompt_tokens_details", \
            "completion_tokens_details"
        output = _count(usage, "completion_tokens")
    cached = min(_count(usage, details, "cached_tokens"), prompt)
    return Usage(prompt - cached, output, cached, 0, _count(usage, out_details, "reasoning_tokens"))


def anthropic_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return Usage(_count(usage, "input_tokens"), _count(usage, "output_tokens"),
                 _count(usage, "cache_read_input_tokens"), _count(usage, "cache_creation_input_tokens"))


def converse_usage(usage: Any) -> Usage | None:
    """Bedrock Converse's `inputTokens`/`outputTokens` (cached input counted apart), as its stream's `metadata`
    event reports them: that stream reaches the relay as SSE named by event type, before it is made OpenAI's."""
    if not isinstance(usage, dict):
        return None
    return Usage(_count(usage, "inputTokens"), _count(usage, "outputTokens"), _count(usage, "cacheReadInputTokens"),
                 _count(usage, "cacheWriteInputTokens"))


def gemini_usage(meta: Any) -> Usage | None:
    """`usageMetadata`: thinking is billed as output but reported beside it (`thoughtsTokenCount`)."""
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount")
    cached = min(_count(meta, "cachedContentTokenCount"), prompt)
    thoughts = _count(meta, "thoughtsTokenCount")
    return Usage(prompt - cached, _count(meta, "candidatesTokenCount") + thoughts, cached, 0, thoughts)


def usage_of_answer(api: Api, body: bytes) -> Usage | None:
    """The usage of a whole (non-streamed) answer; None when it reports none (an error, an odd shape)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return usage_of_document(api, doc)


def usage_of_document(api: Api, doc: Any) -> Usage | None:
    """The usage of a parsed answer (or of the part of it `ANSWER_USAGE_KEYS` names)."""
    if api is Api.ANTHROPIC:
        return anthropic_usage(doc.get("usage")) if isinstance(doc, dict) else None
    if api is Api.GEMINI:
        if isinstance(doc, list):  # streamGenerateContent without alt=sse: a JSON array, the last chunk counts
            found = [gemini_usage(unwrapped(d).get("usageMetadata")) for d in doc if isinstance(d, dict)]
            return next((u for u in reversed(found) if u is not None), None)
        doc = unwrapped(doc)
        return gemini_usage(doc.get("usageMetadata")) if isinstance(doc, dict) else None
    return openai_usage(doc.get("usage")) if isinstance(doc, dict) else None


# Where a whole Chat Completions, Messages or Gemini answer reports its usage: all the parsers above read of it. Envoy
# reads these (json_to_metadata) from the answers it serves by itself, and `usage_of_document` takes them.
ANSWER_USAGE_KEYS: tuple[tuple[str, ...], ...] = (
    ("usage", "prompt_tokens"), ("usage", "completion_tokens"), ("usage", "prompt_tokens_details", "cached_tokens"),
    ("usage", "completion_tokens_details", "reasoning_tokens"),
    ("usage", "input_tokens"), ("usage", "output_tokens"), ("usage", "cache_read_input_tokens"),
    ("usage", "cache_creation_input_tokens"),
    ("usageMetadata", "promptTokenCount"), ("usageMetadata", "toolUsePromptTokenCount"),
    ("usageMetadata", "cachedContentTokenCount"), ("usageMetadata", "candidatesTokenCount"),
    ("usageMetadata", "thoughtsTokenCount"),
)


def document_of_keys(values: Mapping[str, object]) -> dict[str, Any]:
    """The answer's usage rebuilt from the values read at `ANSWER_USAGE_KEYS` (keyed by their dotted path): a
    whole number as an int (Envoy's metadata holds every number as a double), anything else as it came."""
    doc: dict[str, Any] = {}
    for dotted, value in values.items():
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = int(value) if isinstance(value, float) and value.is_integer() else value
    return doc


class StreamUsage:
    """Reads usage from a streamed answer as it passes, chunk by chunk, split at any byte.

    With `hide_usage_chunk` (the gateway asked OpenAI for `stream_options.include_usage` on the client's
    behalf) the extra usage-only chunk is kept from the client: `feed` then returns what to pass on, whole
    events only. Without it, `feed` returns the chunk as it came, at once.
    """

    def __init__(self, api: Api, hide_usage_chunk: bool = False) -> None:
        self._api = api
        self._hide = hide_usage_chunk
        self._events = EventSplitter()
        self.usage: Usage | None = None
        self.response_id = ""  # a Responses answer's id, from the event that carries its usage

    def feed(self, chunk: bytes, end: bool = False) -> bytes:
        events = self._events.feed(chunk, end)
        if not self._hide:
            for event in events:
                self._read(event)
            return chunk
        out = []
        for event in events:
            if not self._read(event):
                out.append(event + b"\n\n")
        return b"".join(out)

    def _read(self, event: bytes) -> bool:
        """Take what the event says; True when it is the usage-only chunk a client did not ask for."""
        name, data = fields(event)
        if b"usage" not in data:  # most events carry none (Gemini's is usageMetadata): not parsed at all
            return False
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(doc, dict):
            return False
        found: Usage | None = None
        if name == "metadata" and isinstance(doc.get("usage"), dict) and "inputTokens" in doc["usage"]:
            found = converse_usage(doc["usage"])  # Bedrock's ConverseStream, whatever the client's API
        elif self._api is Api.ANTHROPIC:
            kind = doc.get("type", name)
            usage = doc.get("message", {}).get("usage") if kind == "message_start" and isinstance(
                doc.get("message"), dict) else doc.get("usage") if kind == "message_delta" else None
            found = anthropic_usage(usage)
        elif self._api is Api.GEMINI:
            found = gemini_usage(unwrapped(doc).get("usageMetadata"))
        elif isinstance(doc.get("response"), dict):  # Responses: response.completed (or .incomplete/.failed)
            found = openai_usage(doc["response"].get("usage"))
            self.response_id = str(doc["response"].get("id") or "")
        else:
            found = openai_usage(doc.get("usage"))
            if found is not None and self._hide and doc.get("choices") == []:
                self.usage = found
                return True
        if found is not None:
            self.usage = found if self.usage is None or self._api is not Api.ANTHROPIC else self.usage.merged(found)
        return False


def usage_of_stream_ends(api: Api, head: bytes, tail: bytes = b"") -> Usage | None:
    """The usage of a streamed answer of which only its two ends were kept (each cut at a line's end, nothing in
    between read: the fast path's Lua keeps them): each end read as a stream of its own, the later figures
    winning (Anthropic's message_start is in the head, its last message_delta in the tail)."""
    found: Usage | None = None
    for part in (head, tail):
        reader = StreamUsage(api)
        reader.feed(part, end=True)
        if reader.usage is not None:
            found = reader.usage if found is None else found.merged(reader.usage)
    return found
