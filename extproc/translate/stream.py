"""Streamed answers translated event by event: a provider's stream → internal events → the client's stream.

What every API's stream shares: the reader each API's own builds on, the framing of an event, the error a
failed stream becomes, and the translator that joins a reader to a writer. The events are part of the internal
representation (`ir`); each API's reader and writer live with that API (`openai_chat`, `anthropic`, `gemini`,
`responses`).

Readers take raw chunks (split at any byte: `EventSplitter` holds a partial event) and give events as soon as
each provider event is whole, so the client's first byte is as early as without translation. Writers turn
events into the client API's own stream, with the framing (block starts and stops, the final usage) it needs.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from extproc.core.errors import ClientError
from extproc.formats.sse import EventSplitter, fields
from extproc.translate.ir import CUT, Event, Failed, Finish


def position(value: Any) -> int:
    """A position the provider gave (a block's, a call's, an item's); anything but a number counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class EventReader:
    """Splits the provider's stream into its events; each API's reader turns them into internal events."""

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


def failure(failed: Failed) -> ClientError:
    """The error a writer puts in the client's stream where the provider's failed."""
    return ClientError(502, "upstream_stream_failed", failed.message)


def sse(doc: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(doc) + b"\n\n"


class Reader(Protocol):
    """A provider's stream, read: raw chunks in, internal events out."""

    def feed(self, chunk: bytes, end: bool = False) -> list[Event]: ...


class Writer(Protocol):
    """The client's stream, written: internal events in, the client API's own events out."""

    def write(self, events: list[Event]) -> bytes: ...


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

