"""The fast path's hot models shared through Redis: what any worker of any replica notes, every routes file
publishes within moments.

The set is one sorted set (`<prefix>fast:hot`): each (endpoint, model, streams) scored by when it was last asked for,
trimmed to the most recent `capacity`. A process adds what it noted at once when a pair is new to it, else once
a second (how recent each is), and publishes the same on a channel; every process merges what the others publish,
and reads the whole set when it starts or comes back after Redis was away. While Redis is away a process keeps
its own notes and writes them when it returns (health_sync.py says how the process reports that state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from typing import Protocol

import orjson
import redis.asyncio as aioredis

log = logging.getLogger("extproc.state")
_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts to reach Redis again
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


class HotSync:
    def __init__(self, hot: Hot, url: str, prefix: str, capacity: int) -> None:
        self._hot = hot
        self._url = url
        self._key = f"{prefix}fast:hot"
        self._channel = f"{prefix}fast"
        self._capacity = capacity
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._pending: dict[Pair, float] = {}  # noted here, not yet written
        self._wake = asyncio.Event()
        self.connected = False

    async def run(self) -> None:
        self._hot.watch(self._wake.set)  # a pair new here is written at once
        attempt = 0
        while True:
            client = aioredis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2,
                                       health_check_interval=10)
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (or a bug): keep this process's notes, try again
                if self.connected:
                    log.warning("state.redis: hot models not shared until it is back (%s)", type(exc).__name__)
                self.connected = False
            finally:
                await client.aclose()
            await asyncio.sleep(_RETRY[min(attempt, len(_RETRY) - 1)])
            attempt = 0 if self.connected else attempt + 1

    async def _session(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        try:
            await self._flush(client)
            found = await client.zrevrange(self._key, 0, self._capacity - 1, withscores=True)
            self._hot.merge((p, float(entry[1])) for entry in found if isinstance(entry, tuple | list)
                            and (p := pair_of(entry[0])) is not None)
            self.connected = True
            tasks = [asyncio.create_task(self._write_forever(client)), asyncio.create_task(self._read_forever(pubsub))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
        finally:
            await pubsub.aclose()

    async def _read_forever(self, pubsub: aioredis.client.PubSub) -> None:
        async for message in pubsub.listen():
            self._received(message.get("data"))
        raise ConnectionError("the subscription ended")

    def _received(self, data: object) -> None:
        """Another process's notes; anything else on the channel is ignored."""
        if not isinstance(data, bytes | str):
            return
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(data)
            if isinstance(doc, dict) and doc.get("origin") != self._origin and isinstance(doc.get("asked"), list):
                self._hot.merge((p, float(e[1])) for e in doc["asked"]
                                if isinstance(e, list) and len(e) == 2 and isinstance(e[1], int | float)
                                and (p := _pair(e[0])) is not None)

    async def _write_forever(self, client: aioredis.Redis) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), EVERY)
            self._wake.clear()
            await self._flush(client)

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
                pipe.publish(self._channel, orjson.dumps({"origin": self._origin, "asked": asked}))
                await pipe.execute()
        except BaseException:
            for pair, when in batch.items():  # kept for the next session
                self._pending[pair] = max(when, self._pending.get(pair, when))
            raise
