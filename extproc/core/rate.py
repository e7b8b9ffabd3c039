"""Requests and tokens per minute per client key or team: a sliding window over two fixed minutes. Pure.

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


# Tokens per minute: the same window, but a request's size is known only once it is answered, so a request is
# admitted while the count is under the limit (and charged after), never for what it will add.

def under(previous: int, current: int, now: float, limit: int) -> bool:
    """Whether the tokens counted in the minute that ends now are still under `limit`."""
    return estimate(previous, current, now) < limit


def wait_until_under(previous: int, current: int, now: float, limit: int) -> int:
    """Whole seconds (at least 1) until the count falls under `limit` with nothing more charged: the previous
    minute's weight runs down, and this minute's count becomes the weighted one in the next."""
    into = now % WINDOW
    if current < limit:  # previous · (1 − t/W) + current < limit  ⇔  t > W · (1 − (limit − current) / previous)
        wait = WINDOW * (1.0 - (limit - current) / previous) - into if previous > 0 else 0.0
    else:  # in the next minute: current · (1 − t/W) < limit  ⇔  t > W · (1 − limit / current)
        wait = WINDOW - into + WINDOW * (1.0 - limit / current)
    seconds = max(1, math.ceil(wait))
    later = now + seconds  # on the exact edge the count equals the limit, which is not under it: a second more
    shift = window_start(later) - window_start(now)
    counts = (previous, current) if shift == 0 else (current, 0) if shift == 1 else (0, 0)
    return seconds if under(*counts, later, limit) else seconds + 1
