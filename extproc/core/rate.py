"""Requests per minute per client key: a sliding window over two fixed minutes. Pure.

The estimate counts this minute's requests plus the previous minute's, weighted by how much of it the
sliding window still covers: no doubled burst at a minute's edge (a fixed window lets 2× through there),
and two counters per key are all that has to be shared between replicas.
"""

from __future__ import annotations

import math

WINDOW = 60.0  # seconds


def window_start(now: float) -> int:
    return int(now // WINDOW)


def estimate(previous: int, current: int, now: float) -> float:
    """Requests in the minute that ends now."""
    elapsed = (now % WINDOW) / WINDOW
    return previous * (1.0 - elapsed) + current


def admits(previous: int, current: int, now: float, rpm: int) -> bool:
    """Whether one more request stays within `rpm`."""
    return estimate(previous, current, now) + 1 <= rpm


def retry_after(previous: int, current: int, now: float, rpm: int) -> int:
    """Whole seconds until one more request would be admitted (at least 1), for the 429's retry-after."""
    into = now % WINDOW
    if current + 1 <= rpm and previous > 0:
        # previous · (1 − t/W) + current + 1 ≤ rpm  ⇔  t ≥ W · (1 − (rpm − current − 1) / previous)
        wait = WINDOW * (1.0 - (rpm - current - 1) / previous) - into
    else:  # this minute alone is over: in the next one, this minute's count is the weighted one
        wait = WINDOW - into + (WINDOW * (1.0 - (rpm - 1) / current) if current >= rpm and rpm > 0 else 0.0)
    seconds = max(1, math.ceil(wait))
    later = now + seconds  # float error may leave the exact second a hair short: then the next one
    shift = window_start(later) - window_start(now)
    counts = (previous, current) if shift == 0 else (current, 0) if shift == 1 else (0, 0)
    return seconds if admits(*counts, later, rpm) else seconds + 1
