"""Health shared through a real redis-server: the codec, two processes' worth of Health kept in step, and
Redis going away and coming back."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from extproc.core.health import Health
from extproc.core.windows import WindowLevel, WindowState
from extproc.state.codec import decode_change, encode_change
from extproc.state.health_sync import HealthSync
from tests.conftest import RedisServer
from tests.unit.helpers import settings

POLICY = settings(health={"server_error_cooldown": 60, "auth_suspension": 100}).health


def test_every_table_round_trips_through_the_codec():
    health = Health(POLICY)
    now = time.time()
    health.observe("k1", "m", 429, 30, now)
    health.observe("k1", "m2", 503, None, now)
    health.observe("k2", "m", 401, None, now)
    health.observe("k2", "m", 403, None, now)
    health.observe("k2", "m", 404, None, now, endpoint="chat")
    health.suspend("login", "refresh refused", math.inf)
    health.window("login2", WindowState(1.0, now + 60, True, (WindowLevel("5h", 1.0, now + 60),)), now, 0.95)
    health.window("login3", WindowState(0.97, now + 60, False, (WindowLevel("7d", 0.97, now + 60),)), now, 0.95)
    changes = health.snapshot()
    assert {c[0] for c in changes} == {"cooldowns", "suspended", "model_suspended", "missing", "exhausted",
                                       "strained", "windows"}
    assert [decode_change(encode_change(c)) for c in changes] == changes
    assert decode_change(b'{"t": "from-a-newer-version", "k": ["x"], "v": {}}') is None


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for what the test can observe; the timeout only ends a wait that would hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


def _run(redis_server: RedisServer, body: Callable[[Health, Health, list[HealthSync]], Awaitable[None]]) -> None:
    prefix = f"t{time.monotonic_ns()}:"

    async def main() -> None:
        a, b = Health(POLICY), Health(POLICY)
        syncs = [HealthSync(a, redis_server.url, prefix), HealthSync(b, redis_server.url, prefix)]
        tasks = [asyncio.create_task(s.run()) for s in syncs]
        try:
            await _until(lambda: all(s.connected for s in syncs))
            await body(a, b, syncs)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_a_cooldown_learned_in_one_process_is_known_in_the_other(redis_server):
    async def body(a: Health, b: Health, syncs: list[HealthSync]) -> None:
        now = time.time()
        a.observe("k1", "m", 429, 30, now)
        await _until(lambda: b.blocked("k1", "m", time.time()) is not None)
        a.observe("k1", "m", 200, None, time.time(), started=time.time())  # a success clears it everywhere
        await _until(lambda: b.blocked("k1", "m", time.time()) is None)
        b.suspend("login-1", "refresh refused")
        await _until(lambda: "login-1" in a.suspended_ids(time.time()))

    _run(redis_server, body)


def test_a_process_starting_late_reads_what_is_known(redis_server):
    prefix = f"late{time.monotonic_ns()}:"

    async def main() -> None:
        first = Health(POLICY)
        sync = HealthSync(first, redis_server.url, prefix)
        task = asyncio.create_task(sync.run())
        await _until(lambda: sync.connected)
        first.observe("k1", "m", 503, None, time.time())
        late = Health(POLICY)
        late_sync = HealthSync(late, redis_server.url, prefix)
        async with aioredis.from_url(redis_server.url) as client:  # the change is in Redis before the late one starts
            deadline = time.monotonic() + 30
            while not await client.keys(f"{prefix}health:*"):
                assert time.monotonic() < deadline, "the first process never wrote its change"
                await asyncio.sleep(0.01)
        late_task = asyncio.create_task(late_sync.run())
        await _until(lambda: late.blocked("k1", "m", time.time()) is not None)
        for t in (task, late_task):
            t.cancel()
        await asyncio.gather(task, late_task, return_exceptions=True)

    asyncio.run(main())


def test_redis_going_away_keeps_each_process_serving_and_they_converge_when_it_returns(redis_server):
    async def body(a: Health, b: Health, syncs: list[HealthSync]) -> None:
        redis_server.stop()
        await _until(lambda: not any(s.connected for s in syncs))
        assert all("unreachable since" in s.status() for s in syncs)
        a.observe("k1", "m", 429, 60, time.time())  # learned while Redis is away: kept, and served from
        assert a.blocked("k1", "m", time.time()) is not None and b.blocked("k1", "m", time.time()) is None
        redis_server.start()
        await _until(lambda: all(s.connected for s in syncs))
        await _until(lambda: b.blocked("k1", "m", time.time()) is not None)
        # What one process lifts while the other cannot hear it is gone there too once it reconnects.
        syncs[1]._health.listen(None)  # b stops telling: its next changes are made "while away"
        b.suspend("k9", "401", time.time() + 60)
        a.apply([("suspended", ("k9",), None)])
        redis_server.stop()
        await _until(lambda: not any(s.connected for s in syncs))
        redis_server.start()
        await _until(lambda: all(s.connected for s in syncs))
        await _until(lambda: "k9" not in b.suspended_ids(time.time()))

    _run(redis_server, body)


@pytest.mark.parametrize("url", ["http://x", "127.0.0.1:6379"])
def test_the_redis_url_is_validated(url):
    from extproc.core.errors import ConfigError
    with pytest.raises(ConfigError, match="state.redis.url"):
        settings(state={"redis": {"url": url}})
