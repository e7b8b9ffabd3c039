"""The usage store in Redis (with `state.redis`): every worker of every replica adds to the same hashes, so each
shows one set of figures, and they outlive any replica.

A bucket of one resolution and one dimension is one hash, `{prefix}usage:{m|h|d}:{start}:{dimension}`, whose
fields are `{total}:{value}` (`requests:gpt-4o`), added to with HINCRBY / HINCRBYFLOAT and expiring with its
retention; the latest records are one list, newest first, trimmed to its cap. A batch is one MULTI/EXEC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, fields
from typing import Any

import orjson
import redis.asyncio as aioredis

from extproc.usage.batched import BatchedStore
from extproc.usage.rollup import (
    DAY,
    HOUR,
    MINUTE,
    RECENT_CAP,
    RETENTION,
    Batch,
    check_filters,
    dimension,
    matches,
    points,
    resolution,
    starts,
)
from extproc.usage.store import Dimension, Point, Totals

_LETTER = {MINUTE: "m", HOUR: "h", DAY: "d"}
_TOTALS = tuple(f.name for f in fields(Totals))


class RedisUsageStore(BatchedStore):
    name = "usage store (Redis)"

    def __init__(self, url: str, prefix: str, clock: Callable[[], float] = time.time, cap: int = RECENT_CAP) -> None:
        super().__init__(clock)
        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        self._prefix = f"{prefix}usage:"
        self._cap = cap

    def _bucket(self, res: int, start: int, dim: str) -> str:
        return f"{self._prefix}{_LETTER[res]}:{start}:{dim}"

    async def series(self, since: float, until: float, step: float, by: Dimension | None = None) -> Sequence[Point]:
        res, dim = resolution(step), dimension(by)
        buckets = starts(since, until, res)
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in buckets:
                pipe.hgetall(self._bucket(res, start, dim))
            found = await pipe.execute()
        return points(((start, value, t) for start, held in zip(buckets, found, strict=True)
                       for value, t in _totals(held).items()), int(step))

    async def recent(self, limit: int, filters: Mapping[str, str] | None = None) -> Sequence[Mapping[str, Any]]:
        check_filters(filters)
        chosen: list[dict[str, Any]] = []
        for doc in await self._redis.lrange(f"{self._prefix}recent", 0, self._cap - 1):
            record = orjson.loads(doc)
            if matches(record, filters):
                chosen.append(record)
                if len(chosen) >= limit:
                    break
        return chosen

    async def _write(self, batch: Batch) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            expiring: dict[str, int] = {}
            for (res, start, dim, value), t in batch.totals.items():
                key = self._bucket(res, start, dim)
                for name, amount in zip(_TOTALS, astuple(t), strict=True):
                    if amount and name == "cost":
                        pipe.hincrbyfloat(key, f"{name}:{value}", amount)
                    elif amount:
                        pipe.hincrby(key, f"{name}:{value}", amount)
                expiring[key] = start + res + RETENTION[res]
            now = self._clock()  # a TTL from this clock, the one that chose the buckets (not Redis's)
            for key, until in expiring.items():
                pipe.expire(key, max(1, int(until - now)))
            if batch.records:
                recent = f"{self._prefix}recent"
                pipe.lpush(recent, *(orjson.dumps(d) for d in batch.records))  # the last pushed is first
                pipe.ltrim(recent, 0, self._cap - 1)
            await pipe.execute()

    async def _release(self) -> None:
        await self._redis.aclose()


def _totals(held: Mapping[bytes, bytes]) -> dict[str, Totals]:
    """A bucket's hash → totals per value."""
    parts: dict[str, dict[str, float]] = {}
    for field, amount in held.items():
        name, _, value = field.decode().partition(":")
        if name in _TOTALS:
            parts.setdefault(value, {})[name] = float(amount)
    return {value: Totals(int(got.get("requests", 0)), int(got.get("errors", 0)), int(got.get("input_tokens", 0)),
                          int(got.get("output_tokens", 0)), got.get("cost", 0.0))
            for value, got in parts.items()}
