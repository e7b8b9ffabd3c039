"""Client keys' budgets shared by two replicas through a real redis-server, and while Redis is away.

Each replica reaches Redis through its own TCP front (tests/faults.py) that can refuse connections: a partition,
with Redis and what it holds intact. Both replicas' clocks are one hand-set clock, so the pause before a replica
tries Redis again and the UTC midnight a period resets at are steps of the test, not waits.

While away, each replica counts what it sees on its own (said once in its log) and keeps admitting and refusing
on that count; once Redis answers again, what it spent meanwhile is added there once, in the period it was spent.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import socket
import time
from collections.abc import Awaitable, Iterator

import pytest

from extproc.core.budget import Budget
from extproc.core.clients import ClientKey
from extproc.state.spend import RedisSpend
from extproc.usage.accounting import Accounting
from extproc.usage.record import UsageRecord
from tests.clock import Clock
from tests.conftest import RedisServer
from tests.faults import Outage

TEAM = ClientKey("team", budget=Budget(1.0, "day"))
AWAY_FOR = 1.5  # hand-clock seconds: past the pause a replica waits before it asks Redis again


def utc(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


def charge(usd: float) -> UsageRecord:
    return UsageRecord("req", "team", "openai", "gpt-x", "gpt-x", "openai", "openai:key1", 1, 200, False, 0.1,
                       None, None, usd)


def cut(front: Outage) -> None:
    """Redis away for one replica, and seen away: a new connection is refused at once."""
    front.set("refused")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", front.port), timeout=5).close()


class Replica:
    def __init__(self, redis_server: RedisServer, prefix: str, clock: Clock) -> None:
        self.front = Outage(redis_server.port)
        self.spend = RedisSpend(f"redis://127.0.0.1:{self.front.port}/0", prefix, clock)
        self.accounting = Accounting(self.spend, clock)

    async def spends(self, *costs: float) -> None:
        for usd in costs:
            self.accounting.record(charge(usd), TEAM)
        await self.accounting.settle()

    async def over(self) -> int | None:
        return await self.accounting.over_budget(TEAM)



@pytest.fixture
def clock() -> Clock:
    return Clock(utc("2026-12-31T23:00:00"))


@pytest.fixture
def replicas(redis_server: RedisServer, clock: Clock) -> Iterator[tuple[Replica, Replica]]:
    prefix = f"budget{time.monotonic_ns()}:"
    pair = (Replica(redis_server, prefix, clock), Replica(redis_server, prefix, clock))
    yield pair
    for replica in pair:
        replica.front.close()


async def closing(replicas: tuple[Replica, Replica], steps: Awaitable[None]) -> None:
    """The steps, then each replica's Redis client closed on the loop that opened it."""
    try:
        await steps
    finally:
        for replica in replicas:
            await replica.spend.close()


def test_replicas_share_a_budget_count_alone_while_redis_is_away_and_add_it_up_once_it_is_back(
        replicas: tuple[Replica, Replica], clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    a, b = replicas

    async def run() -> None:
        await a.spends(0.6)
        assert await b.over() is None
        await a.spends(0.5)
        assert await b.over() == 3600  # the other replica's spend counts: refused until midnight UTC

        for replica in (a, b):
            cut(replica.front)
        assert await a.over() is None  # away: its own count, which starts at nothing
        await a.spends(0.7)
        assert await a.over() is None
        await a.spends(0.4)
        assert await a.over() == 3600  # over on its own count
        assert await b.over() is None  # it saw none of it

        for replica in (a, b):
            replica.front.set("up")
        clock.now += AWAY_FOR
        assert await a.over() == 3599  # 3598.5 s to midnight, told in whole seconds
        assert await b.over() == 3599
        shared = await b.spend.spent("team", "2026-12-31")
        assert shared == pytest.approx(0.6 + 0.5 + 0.7 + 0.4)  # what was spent away is added, and once

    with caplog.at_level(logging.INFO, logger="extproc.state"):
        asyncio.run(closing(replicas, run()))
    said = [r.getMessage() for r in caplog.records]
    assert sum("counted per process" in m for m in said) == 2  # once per replica
    assert sum("shared through Redis again" in m for m in said) == 2  # and each says it is back


def test_spend_made_away_before_midnight_stays_in_its_day(replicas: tuple[Replica, Replica], clock: Clock) -> None:
    a, b = replicas

    async def run() -> None:
        cut(a.front)
        clock.now = utc("2026-12-31T23:59:00")
        await a.spends(1.2)
        assert await a.over() == 60  # its own count: over until midnight UTC
        clock.now = utc("2027-01-01T00:00:30")  # a new day, Redis still away
        assert await a.over() is None
        a.front.set("up")
        clock.now += AWAY_FOR
        assert await a.over() is None  # the new day has nothing spent in it
        assert await b.spend.spent("team", "2026-12-31") == pytest.approx(1.2)  # written to the day it was spent
        assert await b.spend.spent("team", "2027-01-01") == 0.0

    asyncio.run(closing(replicas, run()))
