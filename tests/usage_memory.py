"""A usage store in memory, implementing `extproc.usage.store.UsageStore` for tests of what reads it (the web
console); the real stores are tested against the same interface on their own."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from extproc.usage.record import UsageRecord
from extproc.usage.store import Dimension, Point, Totals

_FIELDS = {"client": "client", "model": "served_model", "provider": "provider", "status": "status"}
_BY = {"model": "served", "provider": "provider", "client": "client", "credential": "credential"}


class MemoryUsage:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.records: list[tuple[float, UsageRecord]] = []

    def add(self, record: UsageRecord) -> None:
        self.records.append((self._clock(), record))

    async def flush(self) -> None:
        return None

    async def series(self, since: float, until: float, step: float, by: Dimension | None = None) -> Sequence[Point]:
        buckets: dict[tuple[float, str], list[float]] = {}
        for at, rec in self.records:
            if since <= at < until:
                start = since + (at - since) // step * step
                value = str(getattr(rec, _BY[by])) if by else ""
                into = buckets.setdefault((start, value), [0, 0, 0, 0, 0.0])
                usage = rec.usage
                for i, v in enumerate((1, int(rec.status >= 400 or not rec.served), usage.input if usage else 0,
                                       usage.output if usage else 0, rec.cost)):
                    into[i] += v
        return [Point(start, value, Totals(int(t[0]), int(t[1]), int(t[2]), int(t[3]), t[4]))
                for (start, value), t in sorted(buckets.items())]

    async def recent(self, limit: int, filters: Mapping[str, str] | None = None) -> Sequence[Mapping[str, Any]]:
        out = []
        for at, rec in reversed(self.records):
            doc = {**rec.doc(), "at": at}
            if all(str(doc.get(_FIELDS[k])) == v for k, v in (filters or {}).items()):
                out.append(doc)
            if len(out) == limit:
                break
        return out
