"""A subscription's usage windows, as its answers report them (Claude's unified limits, Codex's windows). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from extproc.core.flows import Windows


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
        levels.append(WindowLevel(limit.name, level, _number(headers.get(limit.reset))))
        if fullest is None or level > fullest[0]:
            fullest = (level, _number(headers.get(limit.reset)))
    refused = spec.status_header is not None and headers.get(spec.status_header, "").lower() in spec.exhausted
    if fullest is None and not refused:
        return None
    if fullest is None:  # refused, with no levels: the soonest reset said is when to look again
        resets = [r for r in (_number(headers.get(limit.reset)) for limit in spec.limits) if r is not None]
        fullest = (1.0, min(resets) if resets else None)
    level, resets_at = fullest
    return WindowState(level, resets_at, refused or level >= 1.0, tuple(levels))


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
