"""The usage store in one SQLite file beside the accounts file (the default): it survives a restart, and every
worker of a replica writes the same file (WAL, so readers never wait on a writer, and writers wait their turn).

Replicas each keep their own file; with `state.redis` the Redis store gives them one set of figures instead.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from extproc.usage.batched import BatchedStore
from extproc.usage.rollup import (
    RECENT_CAP,
    RETENTION,
    Batch,
    check_filters,
    dimension,
    matches,
    points,
    resolution,
)
from extproc.usage.store import Dimension, Point, Totals

FILE_NAME = "usage.sqlite3"
BUSY_TIMEOUT = 5.0  # seconds a write waits for another worker's to end
PRUNE_EVERY = 3600.0  # seconds between two deletions of buckets past their retention (by one process)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS totals (res INTEGER NOT NULL, dim TEXT NOT NULL, start INTEGER NOT NULL, "
    "value TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL, input_tokens INTEGER NOT NULL, "
    "output_tokens INTEGER NOT NULL, cost REAL NOT NULL, PRIMARY KEY (res, dim, start, value)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY AUTOINCREMENT, doc BLOB NOT NULL)",
)
_ADD = ("INSERT INTO totals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (res, dim, start, value) DO UPDATE SET "
        "requests = requests + excluded.requests, errors = errors + excluded.errors, "
        "input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, "
        "cost = cost + excluded.cost")


def open_file(path: Path, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """The file (made 0600, its directory 0700, when new) with its tables; raises OSError or sqlite3.Error."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives its -wal and -shm files the same mode
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last second, never corrupt
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteUsageStore(BatchedStore):
    name = "usage store (SQLite)"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time, cap: int = RECENT_CAP,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__(clock)
        self.path = path
        self._conn = open_file(path, busy_timeout)
        self._lock = threading.Lock()  # one call on the connection at a time, whichever thread makes it
        self._cap = cap
        self._pruned_at = 0.0

    async def series(self, since: float, until: float, step: float, by: Dimension | None = None) -> Sequence[Point]:
        res, dim = resolution(step), dimension(by)
        rows = await asyncio.to_thread(self._read, res, dim, since, until)
        return points(((start, value, Totals(*t)) for start, value, *t in rows), int(step))

    async def recent(self, limit: int, filters: Mapping[str, str] | None = None) -> Sequence[Mapping[str, Any]]:
        check_filters(filters)
        return await asyncio.to_thread(self._recent, limit, filters)

    def _read(self, res: int, dim: str, since: float, until: float) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(
                "SELECT start, value, requests, errors, input_tokens, output_tokens, cost FROM totals "
                "WHERE res = ? AND dim = ? AND start >= ? AND start < ?",
                (res, dim, int(since // res) * res, until)).fetchall()

    def _recent(self, limit: int, filters: Mapping[str, str] | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        with self._lock:
            for (doc,) in self._conn.execute("SELECT doc FROM records ORDER BY id DESC LIMIT ?", (self._cap,)):
                record = orjson.loads(doc)
                if matches(record, filters):
                    found.append(record)
                    if len(found) >= limit:
                        break
        return found

    async def _write(self, batch: Batch) -> None:
        await asyncio.to_thread(self._write_now, batch, self._clock())

    def _write_now(self, batch: Batch, now: float) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_ADD, [(res, dim, start, value, t.requests, t.errors, t.input_tokens,
                                         t.output_tokens, t.cost)
                                        for (res, start, dim, value), t in batch.totals.items()])
                conn.executemany("INSERT INTO records (doc) VALUES (?)", [(orjson.dumps(d),) for d in batch.records])
                conn.execute("DELETE FROM records WHERE id <= (SELECT max(id) FROM records) - ?", (self._cap,))
                if now - self._pruned_at >= PRUNE_EVERY:
                    for res, keep in RETENTION.items():
                        conn.execute("DELETE FROM totals WHERE res = ? AND start < ?", (res, int(now) - keep))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now

    def _describe(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {exc}" if isinstance(exc, (sqlite3.Error, OSError)) else type(exc).__name__

    async def _release(self) -> None:
        with self._lock:
            self._conn.close()
