"""Which credential holds each conversation a provider stores: a Responses answer's id, to the credential that
made it, so a request that continues it (`previous_response_id`) goes back to the one account that can read it.

In this process, or in Redis for every replica. While Redis cannot be reached, each process remembers what it
sees itself (said once in the log); what it remembered then is not in Redis later.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("extproc.state")
KEEP = 30 * 86400  # seconds: OpenAI keeps a stored response 30 days
_LONGEST_ID = 256
_CAPACITY = 100_000  # conversations one process remembers on its own (the oldest go first)


class ConversationHolders(Protocol):
    async def holder(self, response_id: str) -> str | None: ...

    async def remember(self, response_id: str, credential: str) -> None: ...


class LocalHolders:
    def __init__(self, capacity: int = _CAPACITY) -> None:
        self._held: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    async def holder(self, response_id: str) -> str | None:
        return self._held.get(response_id)

    async def remember(self, response_id: str, credential: str) -> None:
        self._held[response_id] = credential
        self._held.move_to_end(response_id)
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)


class RedisHolders:
    def __init__(self, url: str, prefix: str) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = f"{prefix}held:"
        self._local = LocalHolders()
        self._warned = False

    def _failed(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("conversation holders are remembered per process while Redis does not answer: %s",
                        type(exc).__name__)

    async def holder(self, response_id: str) -> str | None:
        if len(response_id) > _LONGEST_ID:
            return None  # no provider's id is that long: nothing was remembered under it
        try:
            found = await self._redis.get(self._prefix + response_id)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._local.holder(response_id)
        if found is None:
            return await self._local.holder(response_id)
        return found.decode() if isinstance(found, bytes) else str(found)

    async def remember(self, response_id: str, credential: str) -> None:
        if len(response_id) > _LONGEST_ID:
            return
        try:
            await self._redis.set(self._prefix + response_id, credential, ex=KEEP)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            await self._local.remember(response_id, credential)
            return
        self._warned = False
