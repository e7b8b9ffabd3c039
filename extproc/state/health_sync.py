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
import os
import secrets
import time
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from extproc.core.health import Change, Health
from extproc.state.codec import change_doc, change_from_doc, decode_change, encode_change, entry_key, expires_in

log = logging.getLogger("extproc.state")
_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts to reach Redis again


class HealthSync:
    def __init__(self, health: Health, url: str, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._health = health
        self._url = url
        self._prefix = prefix
        self._channel = f"{prefix}health"
        self._clock = clock
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._pending: dict[tuple[str, tuple[str, ...]], Change] = {}  # the newest change per entry, unwritten
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
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
        attempt = 0
        while True:
            client = aioredis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2,
                                       health_check_interval=10)
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (or a bug): keep serving, say so once, try again
                if self.connected or self.down_since is None:
                    self.down_since = self._clock()
                    log.warning("state.redis is unreachable (%s); serving from the last known state and "
                                "catching up when it is back", type(exc).__name__)
                self.connected = False
            finally:
                await client.aclose()
            await asyncio.sleep(_RETRY[min(attempt, len(_RETRY) - 1)])
            attempt = 0 if self.connected else attempt + 1

    async def _session(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        try:
            await self._flush(client)  # what we learned while away first: it is newer than what we read
            self._health.replace_all(await self._read_all(client))  # and what others removed meanwhile goes
            if self.down_since is not None:
                log.info("state.redis is back; shared health caught up")
            self.connected, self.down_since = True, None
            tasks = [asyncio.create_task(self._write_forever(client)), asyncio.create_task(self._read_forever(pubsub))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # a write or a read failed: this session is over
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
        """Another process's changes; anything else on the channel is ignored."""
        if not isinstance(data, bytes | str):
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict) or doc.get("origin") == self._origin or not isinstance(doc.get("changes"), list):
            return
        changes = [c for c in (change_from_doc(raw) for raw in doc.get("changes", [])) if c is not None]
        self._health.apply(changes)

    async def _read_all(self, client: aioredis.Redis) -> list[Change]:
        found: list[Change] = []
        keys = [k async for k in client.scan_iter(match=f"{self._prefix}health:*", count=500)]
        for start in range(0, len(keys), 500):
            for raw in await client.mget(keys[start:start + 500]):
                change = decode_change(raw) if raw is not None else None
                if change is not None:
                    found.append(change)
        return found

    async def _write_forever(self, client: aioredis.Redis) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush(client)

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
                message = {"origin": self._origin, "changes": [change_doc(c) for c in batch.values()]}
                pipe.publish(self._channel, orjson.dumps(message))
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
