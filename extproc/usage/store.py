"""Where usage is kept for the web console: per-minute totals by model, provider, client key and credential, and
the latest records, surviving a restart and the same on every replica (the JSON usage log stays as it is).

This module names the interface the console reads and the accounting writes; the stores implement it (an
embedded SQLite file by default; Redis when `state.redis` is set, so every replica sees one set of figures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from extproc.usage.record import UsageRecord

Dimension = Literal["model", "provider", "client", "credential"]  # what a total is grouped by
DIMENSIONS: tuple[Dimension, ...] = ("model", "provider", "client", "credential")


@dataclass(frozen=True, slots=True)
class Totals:
    """What the requests of one bucket (and one value of a dimension) added up to."""

    requests: int = 0
    errors: int = 0  # answered with a status of 400 or more, or not served at all
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0  # USD


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of a series: its start (epoch seconds), the dimension's value ("" for all), its totals."""

    start: float
    value: str
    totals: Totals


class UsageStore(Protocol):
    def add(self, record: UsageRecord) -> None:
        """Count one request's record (never blocks the request path: writes are batched)."""

    async def flush(self) -> None:
        """Write what is batched (at shutdown, and before a reader needs it whole)."""

    async def series(self, since: float, until: float, step: float, by: Dimension | None = None) -> Sequence[Point]:
        """Totals per `step` seconds between the two times, per value of `by` (or all together)."""

    async def recent(self, limit: int, filters: Mapping[str, str] | None = None) -> Sequence[Mapping[str, Any]]:
        """The latest records (as `UsageRecord.doc()` writes them), newest first, those matching every filter
        (client, model, provider, status)."""
