"""Bedrock's streamed answers in AWS's event-stream framing, read with botocore's own parser and written as SSE.
InvokeModelWithResponseStream: each `chunk` event an Anthropic stream event in base64, written as the stream
Anthropic's own API would have sent. ConverseStream: each event (messageStart, contentBlockDelta, metadata…) goes on
as an SSE event named by its type, for the translation that reads it. An exception that ends the stream becomes
Anthropic's error event (which every stream reader of the gateway ends on)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from extproc.core.errors import ClientError
from extproc.formats.errors import anthropic_stream_error

EVENT_STREAM = "application/vnd.amazon.eventstream"
_METRICS = "amazon-bedrock-invocationMetrics"  # Bedrock's addition to the last event: not Anthropic's


class BedrockStream:
    """Feeds of AWS event-stream bytes in, Anthropic SSE out (empty until a whole frame has come)."""

    def __init__(self, stream_errors: Mapping[str, int]) -> None:
        self._buffer = EventStreamBuffer()
        self._errors = stream_errors
        self._ended = False  # an error event was written: nothing may follow it

    def feed(self, data: bytes) -> bytes:
        if self._ended:
            return b""
        self._buffer.add_data(data)
        out = []
        try:
            for message in self._buffer:
                out.append(self._event(message.headers, message.payload))
                if self._ended:
                    break
        except ParserError as exc:  # a frame that fails its checksum or length: the stream cannot be trusted on
            out.append(self._error(502, type(exc).__name__, "The provider's event stream was malformed."))
        return b"".join(out)

    def _event(self, headers: Mapping[str, object], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "event" and headers.get(":event-type") == "chunk":
            return _chunk(payload)
        if kind == "event" and isinstance(name := headers.get(":event-type"), str) and name.isalnum():
            return b"event: " + name.encode() + b"\ndata: " + b" ".join(payload.splitlines()) + b"\n\n"
        if kind in ("exception", "error"):
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "error")
            return self._error(self._errors.get(name, 500), name, _said(payload, headers))
        return b""  # neither an event nor an exception: nothing a stream carries

    def _error(self, status: int, name: str, message: str) -> bytes:
        self._ended = True
        return anthropic_stream_error(ClientError(status, name, message), "messages")


def _chunk(payload: bytes) -> bytes:
    """One `chunk` event's Anthropic event, as SSE."""
    try:
        event = base64.b64decode(orjson.loads(payload)["bytes"], validate=True)
        doc = orjson.loads(event)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
        return b""
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return b""
    if _METRICS in doc:
        del doc[_METRICS]
        event = orjson.dumps(doc)
    name: str = doc["type"]
    return b"event: " + name.encode() + b"\ndata: " + event + b"\n\n"


def _said(payload: bytes, headers: Mapping[str, object]) -> str:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    message = doc.get("message") if isinstance(doc, dict) else None
    return str(message or headers.get(":error-message") or "The provider's stream ended with an error.")
