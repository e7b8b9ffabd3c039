"""Counting each client key's requests per minute: in this process, or in Redis for every replica.

The sliding-window arithmetic is `core.rate`'s; here are only the counters. In Redis one script reads
both minutes and counts the request only if it is admitted, so concurrent replicas never admit more than
`rpm` between them. While Redis cannot be reached, each process counts on its own (said once in the log)
rather than refusing every request or letting every request through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from extproc.core import rate

log = logging.getLogger("extproc.state")
_RETRY_AFTER_FAILURE = 1.0  # seconds of counting locally before Redis is tried again


class RateLimiter(Protocol):
    async def admit(self, name: str, rpm: int) -> int | None:
        """None when the request is admitted (and counted); else the seconds to wait (retry-after)."""

    async def used(self, name: str) -> float:
        """The requests counted in the minute that ends now (what `rpm` is held against), for the console."""


class LocalRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, int, int]] = {}  # name → (minute, previous, current)

    async def admit(self, name: str, rpm: int) -> int | None:
        now = self._clock()
        minute = rate.window_start(now)
        seen, previous, current = self._counts.get(name, (minute, 0, 0))
        if seen != minute:
            previous, current = (current if seen == minute - 1 else 0), 0
        if not rate.admits(previous, current, now, rpm):
            self._counts[name] = (minute, previous, current)
            return rate.retry_after(previous, current, now, rpm)
        self._counts[name] = (minute, previous, current + 1)
        return None

    async def used(self, name: str) -> float:
        now = self._clock()
        minute = rate.window_start(now)
        seen, previous, current = self._counts.get(name, (minute, 0, 0))
        if seen != minute:
            previous, current = (current if seen == minute - 1 else 0), 0
        return rate.estimate(previous, current, now)


# KEYS: previous minute's counter, this minute's; ARGV: the previous minute's weight, rpm, expiry (s).
_ADMIT = """
local previous = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[1]) + current + 1 <= tonumber(ARGV[2]) then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  return {1, previous, current}
end
return {0, previous, current}
"""


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_ADMIT)
        self._prefix = f"{prefix}rpm:"
        self._clock = clock
        self._local = LocalRateLimiter(clock)
        self._away_until: float | None = None  # Redis failed: count locally until then

    async def admit(self, name: str, rpm: int) -> int | None:
        now = self._clock()
        if self._away_until is not None and now < self._away_until:
            return await self._local.admit(name, rpm)
        minute = rate.window_start(now)
        keys = [f"{self._prefix}{name}:{minute - 1}", f"{self._prefix}{name}:{minute}"]
        weight = 1.0 - (now % rate.WINDOW) / rate.WINDOW
        try:
            admitted, previous, current = await self._script(keys, [repr(weight), rpm, int(2 * rate.WINDOW)])
        except (RedisError, OSError) as exc:
            if self._away_until is None:
                log.warning("client key rate limits are counted per process until Redis answers again: %s",
                            type(exc).__name__)
            self._away_until = now + _RETRY_AFTER_FAILURE
            return await self._local.admit(name, rpm)
        if self._away_until is not None:
            log.info("client key rate limits are shared through Redis again")
            self._away_until = None
        return None if admitted else rate.retry_after(int(previous), int(current), now, rpm)

    async def used(self, name: str) -> float:
        now = self._clock()
        if self._away_until is not None and now < self._away_until:
            return await self._local.used(name)
        minute = rate.window_start(now)
        try:
            previous, current = await self._redis.mget(f"{self._prefix}{name}:{minute - 1}",
                                                       f"{self._prefix}{name}:{minute}")
        except (RedisError, OSError):
            return await self._local.used(name)
        return rate.estimate(int(previous or 0), int(current or 0), now)

    async def close(self) -> None:
        await self._redis.aclose()
