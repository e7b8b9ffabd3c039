"""Health shared through Redis: what one process learns, every process and replica knows within moments.

Each process keeps its own `Health` (the request path reads it without I/O). Every change it makes is
written to Redis as one key per entry, expiring when the entry stops mattering, and published on a
channel; every process applies what the others publish, and reads all the keys when it starts or comes
back after Redis was away. While Redis is unreachable a process keeps serving from what it knows, says so
once in the log and in `/readyz`, keeps its own changes (the newest per entry), and writes them when Redis
returns. The `redis` package's asyncio client does the talking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from extproc.core.health import Change, Health
from extproc.state.channel import Shared
from extproc.state.codec import change_doc, change_from_doc, decode_change, encode_change, entry_key, expires_in

log = logging.getLogger("extproc.state")


class HealthSync(Shared):
    def __init__(self, health: Health, url: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, f"{prefix}health")
        self._health = health
        self._prefix = prefix
        self._clock = clock
        self._pending: dict[tuple[str, tuple[str, ...]], Change] = {}  # the newest change per entry, unwritten
        self._loop: asyncio.AbstractEventLoop | None = None
        self.down_since: float | None = None

    # -- the Health listener: called where the change was made, hands it to the loop

    def on_change(self, changes: list[Change]) -> None:
        loop = self._loop
        if loop is None:
            return
        if loop is _running_loop():
            self._queue(changes)
        else:
            loop.call_soon_threadsafe(self._queue, changes)

    def _queue(self, changes: list[Change]) -> None:
        for change in changes:
            self._pending[(change[0], change[1])] = change
        self._wake.set()

    def status(self) -> str:
        if self.connected:
            return "redis: connected"
        if self.down_since is None:
            return "redis: connecting"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since))
        return f"redis: unreachable since {since}; serving from the last known state"

    # -- the loop

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._health.listen(self.on_change)
        await super().run()

    def _lost(self, exc: Exception) -> None:
        """Keep serving, say so once."""
        if self.connected or self.down_since is None:
            self.down_since = self._clock()
            log.warning("state.redis is unreachable (%s); serving from the last known state and catching up when "
                        "it is back", type(exc).__name__)

    async def _catch_up(self, client: aioredis.Redis) -> None:
        self._health.replace_all(await self._read_all(client))  # what others removed meanwhile goes too
        if self.down_since is not None:
            log.info("state.redis is back; shared health caught up")
        self.down_since = None

    def _apply(self, doc: dict[str, Any]) -> None:
        if isinstance(doc.get("changes"), list):
            self._health.apply([c for c in (change_from_doc(raw) for raw in doc["changes"]) if c is not None])

    async def _read_all(self, client: aioredis.Redis) -> list[Change]:
        found: list[Change] = []
        keys = [k async for k in client.scan_iter(match=f"{self._prefix}health:*", count=500)]
        for start in range(0, len(keys), 500):
            for raw in await client.mget(keys[start:start + 500]):
                change = decode_change(raw) if raw is not None else None
                if change is not None:
                    found.append(change)
        return found

    async def _flush(self, client: aioredis.Redis) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        now = self._clock()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for change in batch.values():
                    key = f"{self._prefix}health:{entry_key(change[0], change[1])}"
                    ttl = expires_in(change, now) if change[2] is not None else 0.0
                    if change[2] is None or (ttl is not None and ttl <= 0):
                        pipe.delete(key)
                    elif ttl is None:
                        pipe.set(key, encode_change(change))
                    else:
                        pipe.set(key, encode_change(change), px=max(1, int(ttl * 1000)))
                pipe.publish(self._channel, self._message(changes=[change_doc(c) for c in batch.values()]))
                await pipe.execute()
        except BaseException:
            for entry, change in batch.items():  # kept for the next session, unless a newer one came meanwhile
                self._pending.setdefault(entry, change)
            raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
