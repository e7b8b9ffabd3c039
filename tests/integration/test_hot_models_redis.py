"""The fast path's hot models shared through a real redis-server: what one process notes, another publishes; a
process that starts later reads the set; the set keeps the most recent."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from extproc.fast.hot import HotModels
from extproc.state.hot_sync import HotSync, member
from tests.conftest import RedisServer


async def _until(check, timeout: float = 30.0) -> None:
    """Wait for what the test can observe; the timeout only ends a wait that would hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


def test_a_model_noted_in_one_process_joins_every_processs_set_and_redis_keeps_the_most_recent(
        redis_server: RedisServer) -> None:
    prefix = f"hot{time.monotonic_ns()}:"

    async def main() -> None:
        a, b = HotModels(), HotModels()
        syncs = [HotSync(a, redis_server.url, prefix, 2), HotSync(b, redis_server.url, prefix, 2)]
        tasks = [asyncio.create_task(s.run()) for s in syncs]
        try:
            await _until(lambda: all(s.connected for s in syncs))
            a.note("chat", "m1")
            await _until(lambda: b.recent() == [("chat", "m1", False)])
            b.note("messages", "m2", True)  # a stream's route is its own
            await _until(lambda: set(a.recent()) == {("chat", "m1", False), ("messages", "m2", True)})
            late = HotModels()  # a replica that starts now reads what was asked for before it
            tasks.append(asyncio.create_task(HotSync(late, redis_server.url, prefix, 2).run()))
            await _until(lambda: late.recent() == [("messages", "m2", True), ("chat", "m1", False)])  # newest first
            a.note("chat", "m3")  # past capacity: the least recently asked for (m1) leaves Redis
            await _until(lambda: ("chat", "m3", False) in late.recent())
            client = aioredis.from_url(redis_server.url)
            try:
                kept = set(await client.zrange(f"{prefix}fast:hot", 0, -1))
            finally:
                await client.aclose()
            assert kept == {member(("messages", "m2", True)), member(("chat", "m3", False))}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
