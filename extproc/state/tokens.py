"""Counting the tokens each client key and team used per minute: in this process, or in Redis for every replica.

Two counters per name, the previous minute's and this one's (`core.rate`'s window); a request is held against
them before it goes (one read) and adds its usage once answered (one write). While Redis cannot be reached, each
process counts on its own (said once in the log) rather than refusing every request or letting every one through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from extproc.core import rate

log = logging.getLogger("extproc.state")
_RETRY_AFTER_FAILURE = 1.0  # seconds of counting locally before Redis is tried again
Counts = tuple[int, int]  # (the previous minute's tokens, this minute's)


class TokenCounter(Protocol):
    async def counts(self, names: Sequence[str], now: float) -> list[Counts]:
        """Each name's tokens in the minute before `now`'s and in `now`'s."""

    async def add(self, names: Sequence[str], tokens: int, now: float) -> None:
        """Charge `tokens` to each name, in `now`'s minute."""


class LocalTokens:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int, int]] = {}  # name → (minute, previous, current)

    def _at(self, name: str, minute: int) -> Counts:
        seen, previous, current = self._counts.get(name, (minute, 0, 0))
        if seen == minute:
            return previous, current
        return (current if seen == minute - 1 else 0), 0

    async def counts(self, names: Sequence[str], now: float) -> list[Counts]:
        minute = rate.window_start(now)
        return [self._at(name, minute) for name in names]

    async def add(self, names: Sequence[str], tokens: int, now: float) -> None:
        minute = rate.window_start(now)
        for name in names:
            previous, current = self._at(name, minute)
            self._counts[name] = (minute, previous, current + tokens)


class RedisTokens:
    def __init__(self, url: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = f"{prefix}tpm:"
        self._clock = clock
        self._local = LocalTokens()
        self._away_until: float | None = None  # Redis failed: count locally until then

    def _keys(self, name: str, minute: int) -> tuple[str, str]:
        return f"{self._prefix}{name}:{minute - 1}", f"{self._prefix}{name}:{minute}"

    def _away(self) -> bool:
        return self._away_until is not None and self._clock() < self._away_until

    def _failed(self, exc: Exception) -> None:
        if self._away_until is None:
            log.warning("tokens per minute are counted per process until Redis answers again: %s",
                        type(exc).__name__)
        self._away_until = self._clock() + _RETRY_AFTER_FAILURE

    def _back(self) -> None:
        if self._away_until is not None:
            log.info("tokens per minute are shared through Redis again")
            self._away_until = None

    async def counts(self, names: Sequence[str], now: float) -> list[Counts]:
        if not names:
            return []
        if self._away():
            return await self._local.counts(names, now)
        minute = rate.window_start(now)
        try:
            values = await self._redis.mget([key for name in names for key in self._keys(name, minute)])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._local.counts(names, now)
        self._back()
        found = [int(v or 0) for v in values]
        return list(zip(found[::2], found[1::2], strict=True))

    async def add(self, names: Sequence[str], tokens: int, now: float) -> None:
        if not names or tokens <= 0:
            return
        if not self._away():
            minute = rate.window_start(now)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        key = self._keys(name, minute)[1]
                        pipe.incrby(key, tokens)
                        pipe.expire(key, int(2 * rate.WINDOW))
                    await pipe.execute()
                self._back()
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        await self._local.add(names, tokens, now)

    async def close(self) -> None:
        await self._redis.aclose()
