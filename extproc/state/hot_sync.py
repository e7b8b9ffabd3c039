"""The fast path's hot models shared through Redis: what any worker of any replica notes, every routes file
publishes within moments.

The set is one sorted set (`<prefix>fast:hot`): each (endpoint, model, streams) scored by when it was last asked for,
trimmed to the most recent `capacity`. A process adds what it noted at once when a pair is new to it, else once
a second (how recent each is), and publishes the same on a channel; every process merges what the others publish,
and reads the whole set when it starts or comes back after Redis was away. While Redis is away a process keeps
its own notes and writes them when it returns (health_sync.py says how the process reports that state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from extproc.state.channel import Shared

log = logging.getLogger("extproc.state")
EVERY = 1.0  # seconds between two writes of how recently known pairs were asked for

Pair = tuple[str, str, bool]  # (endpoint, model, streams)


class Hot(Protocol):
    """The fast path's hot models (`fast/hot.py`), as far as sharing them goes."""

    def watch(self, callback: Callable[[], None]) -> None: ...
    def take_noted(self) -> dict[Pair, float]: ...
    def merge(self, asked: Iterable[tuple[Pair, float]]) -> None: ...


def member(pair: Pair) -> bytes:
    return orjson.dumps(list(pair))


def pair_of(raw: bytes | str) -> Pair | None:
    """A member written by `member`; anything else (another version's) is None."""
    try:
        return _pair(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def _pair(doc: object) -> Pair | None:
    if isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], str) and isinstance(doc[1], str) \
            and isinstance(doc[2], bool):
        return doc[0], doc[1], doc[2]
    return None


class HotSync(Shared):
    every = EVERY

    def __init__(self, hot: Hot, url: str, prefix: str, capacity: int) -> None:
        super().__init__(url, f"{prefix}fast")
        self._hot = hot
        self._key = f"{prefix}fast:hot"
        self._capacity = capacity
        self._pending: dict[Pair, float] = {}  # noted here, not yet written

    async def run(self) -> None:
        self._hot.watch(self._wake.set)  # a pair new here is written at once
        await super().run()

    def _lost(self, exc: Exception) -> None:
        """Keep this process's notes until Redis is back."""
        if self.connected:
            log.warning("state.redis: hot models not shared until it is back (%s)", type(exc).__name__)

    async def _catch_up(self, client: aioredis.Redis) -> None:
        found = await client.zrevrange(self._key, 0, self._capacity - 1, withscores=True)
        self._hot.merge((p, float(entry[1])) for entry in found if isinstance(entry, tuple | list)
                        and (p := pair_of(entry[0])) is not None)

    def _apply(self, doc: dict[str, Any]) -> None:
        if isinstance(doc.get("asked"), list):
            self._hot.merge((p, float(e[1])) for e in doc["asked"]
                            if isinstance(e, list) and len(e) == 2 and isinstance(e[1], int | float)
                            and (p := _pair(e[0])) is not None)

    async def _flush(self, client: aioredis.Redis) -> None:
        for pair, when in self._hot.take_noted().items():
            self._pending[pair] = max(when, self._pending.get(pair, when))
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(self._key, {member(p): when for p, when in batch.items()}, gt=True)  # new ones too
                pipe.zremrangebyrank(self._key, 0, -self._capacity - 1)  # the least recently asked for go
                asked = [[list(p), when] for p, when in batch.items()]
                pipe.publish(self._channel, self._message(asked=asked))
                await pipe.execute()
        except BaseException:
            for pair, when in batch.items():  # kept for the next session
                self._pending[pair] = max(when, self._pending.get(pair, when))
            raise
