"""The usage stores against what they write to: a SQLite file in a temp directory and a real redis-server.

Each kind is run through the same cases: two stores (two workers, or two replicas) on one file or one Redis see the
same totals; totals survive closing and reopening; each window reads its own resolution; the latest records are
capped, newest first, filterable; a flush that fails keeps its batch and writes it once later. The clock is set by
hand, so a record lands in the minute, hour and day the test says.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis

from extproc.config import parse_settings
from extproc.usage.batched import BatchedStore
from extproc.usage.redis_store import RedisUsageStore
from extproc.usage.rollup import DAY, HOUR, MINUTE, bucket
from extproc.usage.sqlite_store import SqliteUsageStore
from extproc.usage.store import Totals
from extproc.usage.stores import check_usage_store
from tests.clock import Clock
from tests.conftest import RedisServer
from tests.faults import Outage
from tests.unit.test_usage_rollup import rec

NOW = float(bucket(time.time(), DAY) + 12 * HOUR + 30)  # today at noon UTC (Redis expires keys by its own clock)
Opener = Callable[..., BatchedStore]


@pytest.fixture(params=["sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Opener:
    """Opens another store on the same file, or the same Redis and prefix (another worker, or replica)."""
    if kind == "sqlite":
        return lambda clock, **kw: SqliteUsageStore(tmp_path / "usage.sqlite3", clock, **kw)
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"usage{time.monotonic_ns()}:"
    return lambda clock, **kw: RedisUsageStore(server.url, prefix, clock, **kw)


def run(steps: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(steps())


def test_two_stores_on_one_file_or_one_redis_add_up_to_the_same_totals(opener: Opener) -> None:
    clock = Clock(NOW)

    async def steps() -> None:
        a, b = opener(clock), opener(clock)
        a.add(rec("a1", client="team"))
        a.add(rec("a2", client="ops", status=502, cost=0.0, usage=None))
        b.add(rec("b1", client="team", cost=0.25))
        await a.flush()
        await b.flush()  # after a's: the latest records are in the order they were written
        for store in (a, b):
            [point] = await store.series(NOW - HOUR, NOW + 1, MINUTE)
            assert (point.start, point.value, point.totals) == (bucket(NOW, MINUTE), "", Totals(3, 1, 6, 8, 0.75))
            by_client = {p.value: p.totals for p in await store.series(NOW - HOUR, NOW + 1, MINUTE, "client")}
            assert by_client == {"team": Totals(2, 0, 6, 8, 0.75), "ops": Totals(1, 1, 0, 0, 0.0)}
            assert [r["request_id"] for r in await store.recent(10)] == ["b1", "a2", "a1"]
        await a.close()
        await b.close()

    run(steps)


def test_totals_and_records_survive_closing_and_reopening_the_store(opener: Opener) -> None:
    clock = Clock(NOW)

    async def steps() -> None:
        first = opener(clock)
        first.add(rec("kept"))
        await first.close()  # closing writes what was batched
        again = opener(clock)
        [point] = await again.series(NOW - DAY, NOW + 1, HOUR, "model")
        assert (point.value, point.totals) == ("gpt-x", Totals(1, 0, 3, 4, 0.5))
        assert [r["request_id"] for r in await again.recent(5)] == ["kept"]
        await again.close()

    run(steps)


def test_each_window_sums_its_own_buckets(opener: Opener) -> None:
    """The last hour by minute, the day by hour, the month by day: the same records, bucketed three ways."""
    clock = Clock(NOW)

    async def steps() -> None:
        store = opener(clock)
        for at, rid in ((NOW - 20 * DAY, "weeks ago"), (NOW - 5 * HOUR, "this morning"), (NOW - 90, "just now"),
                        (NOW, "now")):
            clock.now = at
            store.add(rec(rid))
        clock.now = NOW
        await store.flush()
        hour = await store.series(NOW - HOUR, NOW + 1, MINUTE)
        assert [(p.start, p.totals.requests) for p in hour] == [(bucket(NOW - 90, MINUTE), 1), (bucket(NOW, MINUTE), 1)]
        day = await store.series(NOW - DAY, NOW + 1, HOUR)
        assert [(p.start, p.totals.requests) for p in day] == [(bucket(NOW - 5 * HOUR, HOUR), 1),
                                                               (bucket(NOW - 90, HOUR), 1), (bucket(NOW, HOUR), 1)]
        month = await store.series(NOW - 30 * DAY, NOW + 1, DAY)
        assert [(p.start, p.totals.requests) for p in month] == [(bucket(NOW - 20 * DAY, DAY), 1),
                                                                 (bucket(NOW, DAY), 3)]
        six_hours = await store.series(bucket(NOW, DAY), NOW + 1, 6 * HOUR)  # any whole step: summed hours
        assert [(p.start - bucket(NOW, DAY), p.totals.requests) for p in six_hours] == [(6 * HOUR, 2), (12 * HOUR, 1)]
        await store.close()

    run(steps)


def test_the_latest_records_are_capped_newest_first_and_filtered(opener: Opener) -> None:
    clock = Clock(NOW)

    async def steps() -> None:
        store = opener(clock, cap=4)
        for i in range(3):
            store.add(rec(f"old{i}"))
        await store.flush()
        store.add(rec("new0", client="ops", status=429))
        store.add(rec("new1", provider="anthropic", served="claude-x", requested="claude-x"))
        await store.flush()
        assert [r["request_id"] for r in await store.recent(10)] == ["new1", "new0", "old2", "old1"]
        assert [r["request_id"] for r in await store.recent(2)] == ["new1", "new0"]
        assert [r["request_id"] for r in await store.recent(10, {"status": "4xx"})] == ["new0"]
        assert [r["request_id"] for r in await store.recent(10, {"model": "claude-x", "client": "team"})] == ["new1"]
        record = (await store.recent(1, {"client": "ops"}))[0]
        assert (record["status"], record["outcome"], record["at"]) == (429, "failed", NOW)
        with pytest.raises(ValueError, match="no usage filter"):
            await store.recent(1, {"key": "x"})
        await store.close()

    run(steps)


# ---------------------------------------------------------------- a write that fails

def test_a_flush_sqlite_cannot_write_is_kept_and_written_once_later(tmp_path: Path) -> None:
    """Another process holds the file's write lock past the busy timeout: the batch waits for the next flush."""
    clock = Clock(NOW)
    path = tmp_path / "usage.sqlite3"

    async def steps() -> None:
        store = SqliteUsageStore(path, clock, busy_timeout=0.05)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        store.add(rec("first"))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.flush()
        store.add(rec("second"))
        holder.execute("ROLLBACK")
        holder.close()
        await store.flush()
        [point] = await store.series(NOW - HOUR, NOW + 1, MINUTE)
        assert point.totals.requests == 2  # each counted once
        assert [r["request_id"] for r in await store.recent(5)] == ["second", "first"]
        await store.close()

    run(steps)


def test_a_flush_redis_cannot_take_is_kept_and_written_once_it_answers(redis_server: RedisServer) -> None:
    clock = Clock(NOW)
    front = Outage(redis_server.port)
    prefix = f"usage{time.monotonic_ns()}:"

    async def steps() -> None:
        store = RedisUsageStore(f"redis://127.0.0.1:{front.port}/0", prefix, clock)
        reader = RedisUsageStore(redis_server.url, prefix, clock)
        store.add(rec("first"))
        front.set("refused")
        with pytest.raises(ConnectionRefusedError):  # seen away: a new connection is refused at once
            socket.create_connection(("127.0.0.1", front.port), timeout=5).close()
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.flush()
        store.add(rec("second"))
        front.set("up")
        await store.flush()
        [point] = await reader.series(NOW - HOUR, NOW + 1, MINUTE)
        assert point.totals.requests == 2
        assert [r["request_id"] for r in await reader.recent(5)] == ["second", "first"]
        await store.close()
        await reader.close()

    try:
        run(steps)
    finally:
        front.close()


def test_the_flushing_task_says_once_that_it_cannot_write_and_once_that_it_can_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(NOW)
    path = tmp_path / "usage.sqlite3"

    async def steps() -> None:
        store = SqliteUsageStore(path, clock, busy_timeout=0.01)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        store.add(rec("held"))
        task = asyncio.create_task(store.run(every=0.01))
        while sum("usage not written yet" in r.getMessage() for r in caplog.records) < 1:
            await asyncio.sleep(0.01)
        holder.execute("ROLLBACK")
        holder.close()
        while not any("usage written again" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
        task.cancel()
        assert [r["request_id"] for r in await store.recent(5)] == ["held"]
        await store.close()

    with caplog.at_level("INFO", logger="extproc.usage"):
        run(steps)
    assert sum("usage not written yet" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------- the file and the keys

def test_the_sqlite_file_is_the_owners_alone_and_in_wal_mode(tmp_path: Path) -> None:
    clock = Clock(NOW)
    path = tmp_path / "new" / "usage.sqlite3"

    async def steps() -> None:
        store = SqliteUsageStore(path, clock)
        store.add(rec())
        await store.flush()
        for made in (path, path.with_name(path.name + "-wal")):
            assert stat.S_IMODE(os.stat(made).st_mode) == 0o600, made
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        await store.close()

    run(steps)


def test_sqlite_drops_buckets_past_their_retention_and_keeps_the_coarser_ones(tmp_path: Path) -> None:
    clock = Clock(NOW)

    async def steps() -> None:
        store = SqliteUsageStore(tmp_path / "usage.sqlite3", clock)
        store.add(rec("old"))
        await store.flush()
        clock.now = NOW + 3 * DAY  # past two days of minutes, within five weeks of hours
        store.add(rec("new"))
        await store.flush()
        assert [p.start for p in await store.series(NOW - HOUR, NOW + 4 * DAY, MINUTE)] == [bucket(clock.now, MINUTE)]
        assert [p.start for p in await store.series(NOW - HOUR, NOW + 4 * DAY, HOUR)] == \
            [bucket(NOW, HOUR), bucket(clock.now, HOUR)]
        await store.close()

    run(steps)


def test_redis_buckets_expire_with_their_retention(redis_server: RedisServer) -> None:
    clock = Clock(NOW)
    prefix = f"usage{time.monotonic_ns()}:"

    async def steps() -> None:
        store = RedisUsageStore(redis_server.url, prefix, clock)
        store.add(rec())
        await store.flush()
        await store.close()

    run(steps)
    direct = redis.Redis.from_url(redis_server.url)
    try:
        minute = f"{prefix}usage:m:{bucket(NOW, MINUTE)}:model"
        assert direct.hget(minute, "requests:gpt-x") == b"1"
        assert 2 * DAY <= direct.ttl(minute) <= 2 * DAY + MINUTE
        assert 35 * DAY <= direct.ttl(f"{prefix}usage:h:{bucket(NOW, HOUR)}:all") <= 35 * DAY + HOUR
        assert direct.ttl(f"{prefix}usage:d:{bucket(NOW, DAY)}:client") > 35 * DAY
        assert direct.llen(f"{prefix}usage:recent") == 1
    finally:
        direct.close()


def test_a_usage_file_that_cannot_be_made_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    settings = parse_settings({"console": {"usage_store": str(tmp_path / "a-file" / "usage.sqlite3")}}, {})
    with pytest.raises(RuntimeError, match=r"^console\.usage_store: cannot keep usage in .*a-file/usage\.sqlite3 "
                                           r"\((File exists|Not a directory)\); set console\.usage_store to "):
        check_usage_store(settings)
    check_usage_store(parse_settings({"console": {"usage_store": False}}, {}))  # off: nothing to open
    check_usage_store(parse_settings({"auth": {"store": str(tmp_path / "accounts.json")}}, {}))
    assert (tmp_path / "usage.sqlite3").exists()
