"""Client keys' requests per minute counted in a real redis-server, shared by replicas, and without it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from extproc.state.rate_limit import RedisRateLimiter
from tests.conftest import RedisServer, free_port


def test_replicas_sharing_redis_admit_rpm_between_them(redis_server: RedisServer) -> None:
    async def run() -> list[int | None]:
        prefix = f"rate-{time.monotonic_ns()}:"
        limiters = [RedisRateLimiter(redis_server.url, prefix) for _ in range(3)]
        try:
            answers = await asyncio.gather(*(lim.admit("team", 5) for lim in limiters for _ in range(4)))
        finally:
            for lim in limiters:
                await lim.close()
        return list(answers)

    answers = asyncio.run(run())
    assert sum(1 for a in answers if a is None) == 5
    assert all(a is not None and a >= 1 for a in answers if a is not None)


def test_without_redis_each_process_counts_on_its_own_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", "nowhere:")

    async def run() -> list[int | None]:
        try:
            return [await limiter.admit("team", 2) for _ in range(3)]
        finally:
            await limiter.close()

    with caplog.at_level(logging.WARNING, logger="extproc.state"):
        answers = asyncio.run(run())
    assert answers[:2] == [None, None] and isinstance(answers[2], int)
    said = [r for r in caplog.records if "counted per process" in r.getMessage()]
    assert len(said) == 1
