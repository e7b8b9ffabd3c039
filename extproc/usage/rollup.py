"""What a usage store keeps, as plain data: records folded into per-bucket totals, bucket arithmetic, filters. Pure.

Every record is counted at three resolutions when it is written (the minute, the hour and the UTC day it ended
in), so a reader asks the coarsest one its step allows: a month by day reads 31 buckets, never 44,640 minutes,
and old minutes can be dropped without losing the hours and days they made (see `RETENTION`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from extproc.usage.record import UsageRecord
from extproc.usage.store import DIMENSIONS, Dimension, Point, Totals

MINUTE, HOUR, DAY = 60, 3600, 86400
RESOLUTIONS = (DAY, HOUR, MINUTE)  # coarsest first
# How long each resolution's buckets are kept (seconds): the last two days by minute, five weeks by hour, a
# year and a month by day. Reading further back at a finer step finds nothing there (the coarser rows still
# hold it).
RETENTION: Mapping[int, int] = {MINUTE: 2 * DAY, HOUR: 35 * DAY, DAY: 400 * DAY}
ALL = "all"  # the dimension of the totals of every request together (its value is "")
NONE = "-"  # a record's value for a dimension it has none of (no client key, no credential), as in the metrics
FILTERS = ("client", "model", "provider", "status")
RECENT_CAP = 10_000  # the latest records a store keeps (older ones are dropped)

Key = tuple[int, int, str, str]  # (resolution, bucket start, dimension, value)


def totals_of(rec: UsageRecord) -> Totals:
    usage = rec.usage
    return Totals(requests=1, errors=int(rec.status >= 400 or not rec.served),
                  input_tokens=usage.input if usage else 0, output_tokens=usage.output if usage else 0,
                  cost=rec.cost)


def plus(a: Totals, b: Totals) -> Totals:
    return Totals(a.requests + b.requests, a.errors + b.errors, a.input_tokens + b.input_tokens,
                  a.output_tokens + b.output_tokens, a.cost + b.cost)


def values_of(rec: UsageRecord) -> dict[str, str]:
    """The record's value in each dimension (and "" in `ALL`): the model that served it, else the one asked for."""
    return {ALL: "", "model": rec.served or rec.requested or NONE, "provider": rec.provider or NONE,
            "client": rec.client or NONE, "credential": rec.credential or NONE}


def bucket(at: float, step: int) -> int:
    """The start of the `step`-second bucket `at` falls in (aligned to the epoch: hours and UTC days)."""
    return int(at // step) * step


def resolution(step: float) -> int:
    """The coarsest resolution a series of `step` seconds can be summed from."""
    for res in RESOLUTIONS:
        if step >= res and step % res == 0:
            return res
    raise ValueError(f"a series' step must be a whole number of minutes, got {step:g}s")


def dimension(by: Dimension | None) -> str:
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"no usage dimension {by!r}: one of {', '.join(DIMENSIONS)}")
    return by or ALL


class Batch:
    """What was added since the last write. `fold` runs on the request path (every answer), so it only adds to
    per-minute sums and keeps the record; the hours, days and documents are made when the batch is written (once
    a second, by the store): `totals` and `records`."""

    __slots__ = ("_minutes", "_recent")

    def __init__(self) -> None:
        self._minutes: dict[tuple[int, str, str], list[float]] = {}  # (minute, dim, value) → sums, as Totals
        self._recent: deque[tuple[UsageRecord, float]] = deque(maxlen=RECENT_CAP)  # a store away long keeps this

    def __bool__(self) -> bool:
        return bool(self._minutes or self._recent)

    def fold(self, rec: UsageRecord, at: float) -> None:
        start = int(at // MINUTE) * MINUTE
        usage = rec.usage
        one = (1, int(rec.status >= 400 or not rec.served), usage.input if usage else 0,
               usage.output if usage else 0, rec.cost)
        minutes = self._minutes
        for dim, value in values_of(rec).items():
            sums = minutes.get((start, dim, value))
            if sums is None:
                minutes[(start, dim, value)] = list(one)
            else:
                for i, n in enumerate(one):
                    sums[i] += n
        self._recent.append((rec, at))

    @property
    def totals(self) -> dict[Key, Totals]:
        """Every resolution's totals, summed from the minutes."""
        found: dict[Key, list[float]] = {}
        for (start, dim, value), sums in self._minutes.items():
            for res in RESOLUTIONS:
                key = (res, bucket(start, res), dim, value)
                into = found.get(key)
                if into is None:
                    found[key] = list(sums)
                else:
                    for i, n in enumerate(sums):
                        into[i] += n
        return {key: Totals(int(r), int(e), int(i), int(o), c) for key, (r, e, i, o, c) in found.items()}

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records as documents, oldest first, with the time each was counted; without the prompt and answer
        (log.bodies): they stay in the log, never in a store a page reads."""
        return [_stored(rec, at) for rec, at in self._recent]

    def merge(self, later: Batch) -> Batch:
        """This batch (one that could not be written) with what was added after it."""
        merged = Batch()
        for batch in (self, later):
            for key, sums in batch._minutes.items():
                into = merged._minutes.setdefault(key, [0, 0, 0, 0, 0.0])
                for i, n in enumerate(sums):
                    into[i] += n
            merged._recent.extend(batch._recent)
        return merged


def _stored(rec: UsageRecord, at: float) -> dict[str, Any]:
    doc = rec.doc()
    for name, _ in rec.bodies:
        del doc[name]
    doc["at"] = round(at, 3)
    return doc


def points(rows: Iterable[tuple[int, str, Totals]], step: int) -> list[Point]:
    """Rows (bucket start, value, totals) of a finer resolution summed into `step`-second buckets, in order."""
    summed: dict[tuple[int, str], Totals] = {}
    for start, value, t in rows:
        key = (bucket(start, step), value)
        summed[key] = plus(summed.get(key, Totals()), t)
    return [Point(float(start), value, t) for (start, value), t in sorted(summed.items())]


def starts(since: float, until: float, res: int) -> range:
    """The starts of the `res` buckets a series between the two times reads: from the one `since` falls in, up
    to `until` (excluded)."""
    return range(bucket(since, res), int(-(-until // 1)), res)


def check_filters(filters: Mapping[str, str] | None) -> None:
    """Refuse a filter no record has (a typo would otherwise match nothing, silently)."""
    for name in filters or {}:
        if name not in FILTERS:
            raise ValueError(f"no usage filter {name!r}: one of {', '.join(FILTERS)}")


def matches(doc: Mapping[str, Any], filters: Mapping[str, str] | None) -> bool:
    """Whether a record (its doc) matches every filter: client, model (served or asked for), provider, and status
    (a code like 429, a class like 5xx, or an outcome: served, failed, rejected). An empty filter matches all."""
    return all(not wanted or _matches(doc, name, wanted) for name, wanted in (filters or {}).items())


def _matches(doc: Mapping[str, Any], name: str, wanted: str) -> bool:
    if name == "model":
        return wanted in (doc.get("served_model"), doc.get("requested_model"))
    if name == "status":
        status = str(doc.get("status"))
        if len(wanted) == 3 and wanted.endswith("xx"):
            return status[:1] == wanted[:1]
        return wanted in (status, doc.get("outcome"))
    return doc.get(name) == wanted
