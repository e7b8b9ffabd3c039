"""What each client key has spent in its budget's period: in this process, or in Redis for every replica.

A request is admitted while the spend is under the budget and adds its cost when its answer is in, so the
spend can pass the budget by at most what the requests in flight at that moment cost (every replica's).
While Redis cannot be reached, each process counts what it sees on its own (said once in the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("extproc.state")
_RETRY_AFTER_FAILURE = 1.0


class SpendLedger(Protocol):
    async def spent(self, name: str, period: str) -> float: ...

    async def add(self, name: str, period: str, usd: float, keep: float) -> None:
        """Add to a period's spend, kept for `keep` seconds (past the period's end)."""


class LocalSpend:
    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], float] = {}

    async def spent(self, name: str, period: str) -> float:
        return self._spent.get((name, period), 0.0)

    async def add(self, name: str, period: str, usd: float, keep: float) -> None:
        self._spent[(name, period)] = self._spent.get((name, period), 0.0) + usd


class RedisSpend:
    def __init__(self, url: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = f"{prefix}spend:"
        self._clock = clock
        self._local = LocalSpend()  # what was spent while Redis was away, until it is written there
        self._unwritten: dict[tuple[str, str], float] = {}
        self._away_until: float | None = None

    def _away(self) -> bool:
        return self._away_until is not None and self._clock() < self._away_until

    def _failed(self, exc: Exception) -> None:
        if self._away_until is None:
            log.warning("client key budgets are counted per process until Redis answers again: %s",
                        type(exc).__name__)
        self._away_until = self._clock() + _RETRY_AFTER_FAILURE

    async def spent(self, name: str, period: str) -> float:
        if self._away():
            return await self._local.spent(name, period)
        try:
            await self._catch_up()
            value = await self._redis.get(f"{self._prefix}{name}:{period}")
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._local.spent(name, period)
        return float(value or 0.0)

    async def add(self, name: str, period: str, usd: float, keep: float) -> None:
        if usd <= 0:
            return
        if not self._away():
            try:
                await self._catch_up()
                await self._write(name, period, usd, keep)
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        await self._local.add(name, period, usd, keep)
        self._unwritten[(name, period)] = keep

    async def _write(self, name: str, period: str, usd: float, keep: float) -> None:
        key = f"{self._prefix}{name}:{period}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, max(1, int(keep)))
            await pipe.execute()

    async def _catch_up(self) -> None:
        """Redis answers again: what was spent meanwhile is added to what it holds, then counted there only.
        Taken out before anything is awaited, so two requests arriving together never write it twice."""
        if self._away_until is None:
            return
        local, unwritten = self._local, self._unwritten
        self._local, self._unwritten, self._away_until = LocalSpend(), {}, None
        try:
            for (name, period), keep in list(unwritten.items()):
                await self._write(name, period, await local.spent(name, period), keep)
                del unwritten[(name, period)]
        except (RedisError, OSError):
            for (name, period), keep in unwritten.items():  # put back what was not written, for the next time
                await self._local.add(name, period, await local.spent(name, period), keep)
                self._unwritten[(name, period)] = keep
            raise
        log.info("client key budgets are shared through Redis again")

    async def close(self) -> None:
        await self._redis.aclose()
