"""Server-sent events as they stream: whole events out of chunks split at any byte. Pure.

Providers end an event with a blank line (`\\n\\n`, or `\\r\\n\\r\\n`); a chunk may end anywhere, inside a
line or inside a UTF-8 character, so what follows the last complete event is held until the next chunk.
The field syntax of an event (`event:`, `data:` lines) is read by `fields`.
"""

from __future__ import annotations

import re

_EVENT_END = re.compile(rb"\r?\n\r?\n")


class EventSplitter:
    """Feeds chunks, returns the complete raw events each completes (without their blank line)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes, end: bool = False) -> list[bytes]:
        data = self._pending + chunk if self._pending else chunk
        events = _EVENT_END.split(data)
        self._pending = b"" if end else events.pop()
        return [e for e in events if e.strip()]

    @property
    def pending(self) -> bytes:
        return self._pending


def fields(event: bytes) -> tuple[str, bytes]:
    """An event's name (`message` when it has none) and its data lines joined by newlines."""
    name, data = "message", []
    for raw in event.split(b"\n"):
        line = raw.rstrip(b"\r")
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    return name, b"\n".join(data)
