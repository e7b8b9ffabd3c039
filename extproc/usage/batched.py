"""What every usage store shares: `add` folds a record into a batch in memory (the request path never waits on a
disk or a network), and a flush writes the batch whole, every second and at shutdown.

A batch that could not be written is kept and merged with what came after it, for the next flush: a store that is
away for a while loses nothing, and each batch is written in one transaction, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from extproc.usage.record import UsageRecord
from extproc.usage.rollup import Batch

log = logging.getLogger("extproc.usage")
FLUSH_EVERY = 1.0  # seconds


class BatchedStore:
    """The batching half of a `UsageStore`; a store adds `_write` (one batch, all or nothing) and its readers."""

    name = "usage store"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending = Batch()
        self._writing = asyncio.Lock()
        self._failing = False

    def add(self, record: UsageRecord) -> None:
        self._pending.fold(record, self._clock())

    async def flush(self) -> None:
        async with self._writing:  # one write at a time: a batch is taken only once the last one is settled
            batch, self._pending = self._pending, Batch()
            if not batch:
                return
            try:
                await self._write(batch)
            except BaseException:
                self._pending = batch.merge(self._pending)
                raise

    async def run(self, every: float = FLUSH_EVERY) -> None:
        """Flush every `every` seconds until cancelled; a failure is said once, and its batch kept."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.flush()
            except Exception as exc:
                if not self._failing:
                    log.warning("%s: usage not written yet, kept for the next try: %s", self.name,
                                self._describe(exc))
                self._failing = True
            else:
                if self._failing:
                    log.info("%s: usage written again", self.name)
                self._failing = False

    async def close(self) -> None:
        """Write what is left (said when it cannot be), then let go of the store."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("%s: the last usage could not be written: %s", self.name, self._describe(exc))
        await self._release()

    async def _write(self, batch: Batch) -> None:
        raise NotImplementedError

    def _describe(self, exc: Exception) -> str:
        """What went wrong, for the log (the kind only: a message could carry an address with a password)."""
        return type(exc).__name__

    async def _release(self) -> None:
        raise NotImplementedError
