"""A subscription's usage windows, as its answers report them (Claude's unified limits, Codex's windows). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from extproc.core.flows import Windows


@dataclass(frozen=True, slots=True)
class WindowState:
    utilization: float  # of the fullest window, 0–1 (above 1: over its limit)
    resets_at: float | None  # when that window resets (unix seconds), when said
    exhausted: bool  # the subscription refuses until then


def read_windows(spec: Windows, headers: Mapping[str, str]) -> WindowState | None:
    """The fullest window an answer reports; None when it reports none."""
    fullest: tuple[float, float | None] | None = None
    for limit in spec.limits:
        level = _number(headers.get(limit.utilization))
        if level is None:
            continue
        level /= limit.scale
        if fullest is None or level > fullest[0]:
            fullest = (level, _number(headers.get(limit.reset)))
    refused = spec.status_header is not None and headers.get(spec.status_header, "").lower() in spec.exhausted
    if fullest is None and not refused:
        return None
    if fullest is None:  # refused, with no levels: the soonest reset said is when to look again
        resets = [r for r in (_number(headers.get(limit.reset)) for limit in spec.limits) if r is not None]
        fullest = (1.0, min(resets) if resets else None)
    level, resets_at = fullest
    return WindowState(level, resets_at, refused or level >= 1.0)


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
