"""What every state shared through Redis does alike: one session at a time (subscribed to its channel, its own
pending writes first, then the shared state read whole, then writing and reading side by side), a new session
after Redis was away, and messages tagged with their origin so a process skips its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis

_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between attempts to reach Redis again


class Shared:
    """A state shared through Redis: the subclass says what it writes (`_flush`), what it reads when a session
    begins (`_catch_up`), what another process's message changes (`_apply`), and what losing Redis means
    (`_lost`)."""

    every: float | None = None  # seconds between two writes even with nothing new (None: only when woken)

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self.connected = False

    async def run(self) -> None:
        attempt = 0
        while True:
            client = aioredis.from_url(self._url, socket_timeout=5, socket_connect_timeout=2,
                                       health_check_interval=10)
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (or a bug): keep serving, try again
                self._lost(exc)
                self.connected = False
            finally:
                await client.aclose()
            await asyncio.sleep(_RETRY[min(attempt, len(_RETRY) - 1)])
            attempt = 0 if self.connected else attempt + 1

    async def _session(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        try:
            await self._flush(client)  # what was kept while away first: it is newer than what is read
            await self._catch_up(client)
            self.connected = True
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
        """Another process's message; anything else on the channel (and this process's own) is ignored."""
        if not isinstance(data, bytes | str):
            return
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(data)
            if isinstance(doc, dict) and doc.get("origin") != self._origin:
                self._apply(doc)

    async def _write_forever(self, client: aioredis.Redis) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every)
            self._wake.clear()
            await self._flush(client)

    def _message(self, **fields: Any) -> bytes:
        """A message on the channel, tagged as this process's."""
        return orjson.dumps({"origin": self._origin, **fields})

    async def _flush(self, client: aioredis.Redis) -> None:
        raise NotImplementedError

    async def _catch_up(self, client: aioredis.Redis) -> None:
        raise NotImplementedError

    def _apply(self, doc: dict[str, Any]) -> None:
        raise NotImplementedError

    def _lost(self, exc: Exception) -> None:
        raise NotImplementedError
