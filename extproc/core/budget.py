"""Client keys' and teams' spending budgets: which period a moment falls in, and when it resets. Pure.

Periods are calendar days, ISO weeks (Monday to Sunday) or months in UTC, so every replica agrees on them
without talking.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Budget:
    usd: float
    per: str  # day | week | month


def period(now: float, per: str) -> tuple[str, float]:
    """The period `now` falls in (its name, e.g. 2026-12-01, 2026-W49 or 2026-12) and when the next one starts."""
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    if per in ("day", "week"):
        start = dt.datetime(at.year, at.month, at.day, tzinfo=dt.UTC)
        if per == "day":
            return start.strftime("%Y-%m-%d"), (start + dt.timedelta(days=1)).timestamp()
        start -= dt.timedelta(days=start.weekday())  # back to Monday
        return start.strftime("%G-W%V"), (start + dt.timedelta(weeks=1)).timestamp()
    start = dt.datetime(at.year, at.month, 1, tzinfo=dt.UTC)
    following = dt.datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.strftime("%Y-%m"), following.timestamp()


def seconds_to(reset: float, now: float) -> int:
    return max(1, math.ceil(reset - now))
