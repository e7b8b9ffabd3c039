"""A subscription's usage windows, as its answers report them (Claude's unified limits, Codex's windows). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.core.flows import WindowEvent, Windows


@dataclass(frozen=True, slots=True)
class WindowLevel:
    name: str
    utilization: float  # 0–1 (above 1: over its limit)
    resets_at: float | None


@dataclass(frozen=True, slots=True)
class WindowState:
    utilization: float  # of the fullest window, 0–1 (above 1: over its limit)
    resets_at: float | None  # when that window resets (unix seconds), when said
    exhausted: bool  # the subscription refuses until then
    levels: tuple[WindowLevel, ...] = ()  # every window the answer reported

    def differs(self, other: WindowState | None, step: float = 0.05) -> bool:
        """Whether this reading says something `other` did not: worth keeping (a level moved by `step`)."""
        if other is None or self.exhausted != other.exhausted or len(self.levels) != len(other.levels):
            return True
        return any(a.name != b.name or abs(a.utilization - b.utilization) >= step or a.resets_at != b.resets_at
                   for a, b in zip(self.levels, other.levels, strict=True))


def read_windows(spec: Windows, headers: Mapping[str, str]) -> WindowState | None:
    """The fullest window an answer reports; None when it reports none."""
    fullest: tuple[float, float | None] | None = None
    levels = []
    for limit in spec.limits:
        level = _number(headers.get(limit.utilization))
        if level is None:
            continue
        level /= limit.scale
        levels.append(WindowLevel(_name(limit.name, _number(headers.get(limit.minutes or ""))), level,
                                  _number(headers.get(limit.reset))))
        if fullest is None or level > fullest[0]:
            fullest = (level, _number(headers.get(limit.reset)))
    refused = spec.status_header is not None and headers.get(spec.status_header, "").lower() in spec.exhausted
    if fullest is None and not refused:
        return None
    if fullest is None:  # refused, with no levels: the soonest reset said is when to look again
        resets = [r for r in (_number(headers.get(limit.reset)) for limit in spec.limits) if r is not None]
        fullest = (1.0, min(resets) if resets else None)
    level, resets_at = fullest
    return WindowState(level, resets_at, refused or level >= 1.0 and not _goes_on(spec, headers), tuple(levels))


def _goes_on(spec: Windows, headers: Mapping[str, str]) -> bool:
    """Whether the answer says a full window does not stop the subscription (credits left, or no limit)."""
    credits = spec.credits
    return credits is not None and any(headers.get(h, "").lower() in ("true", "1")
                                       for h in (credits.has, credits.unlimited))


def _name(name: str, minutes: float | None) -> str:
    """A window named by its length when the answer says it (300 minutes: 5h), else as configured."""
    if minutes is None or minutes <= 0 or minutes != int(minutes):
        return name
    whole = int(minutes)
    return f"{whole // 1440}d" if whole % 1440 == 0 else f"{whole // 60}h" if whole % 60 == 0 else f"{whole}m"


def event_headers(event: WindowEvent, payload: bytes) -> dict[str, str] | None:
    """The headers a stream event stands for (`event.fields`); None when the payload is not that event."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != event.type:
        return None
    found = {}
    for path, header in event.fields.items():
        value: Any = doc
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            found[header] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            found[header] = str(value)
    return found


# The longest unfinished line held back for the windows event: the event is far shorter, and a longer line (a whole
# answer in response.completed) is passed over to its end rather than held and copied again with every chunk.
_HELD = 64 * 1024


class StreamWindows:
    """Reads a stream's windows event as the stream passes: one scan of each chunk for the event's type until it
    is found, nothing after. Only the last, unfinished line of a chunk is held back (an event split across
    chunks), and no more than _HELD of it; the stream itself is never changed."""

    def __init__(self, spec: Windows, event: WindowEvent) -> None:
        self._spec, self._event = spec, event
        self._marker = orjson.dumps(event.type)
        self._tail = bytearray()  # the start of the unfinished line
        self._skipping = False  # the unfinished line outgrew _HELD: passed over up to its end
        self.done = False

    def feed(self, chunk: bytes) -> WindowState | None:
        if self.done:
            return None
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            self._hold(chunk)
            return None
        whole = chunk[:cut]
        if self._skipping:  # the rest of a line too long to be the event
            whole, self._skipping = whole[whole.find(b"\n") + 1:], False
        elif self._tail:
            whole = bytes(self._tail) + whole
        self._tail.clear()
        self._hold(chunk[cut:])
        if self._marker not in whole:
            return None
        for line in whole.split(b"\n"):
            if line.startswith(b"data:") and self._marker in line:
                headers = event_headers(self._event, line[5:].strip())
                if headers is not None:
                    self.done = True
                    self._tail.clear()
                    return read_windows(self._spec, headers)
        return None

    def _hold(self, part: bytes) -> None:
        """Keeps the start of an unfinished line, up to _HELD; past that, the line is let go."""
        if self._skipping or not part:
            return
        if len(self._tail) + len(part) > _HELD:
            self._tail.clear()
            self._skipping = True
        else:
            self._tail += part


def stream_windows(spec: Windows | None) -> StreamWindows | None:
    """A reader for a login's windows event, when its answers carry one."""
    return StreamWindows(spec, spec.event) if spec is not None and spec.event is not None else None


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
