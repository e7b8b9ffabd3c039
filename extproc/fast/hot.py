"""The hot models: the (endpoint, model, streams) the full path served lately that could have gone fast, which the
routes file publishes. A process's own requests note them; with `state.redis`, every worker and replica shares
its notes (`state/hot_sync.py` merges the others' in), so each routes file holds the models asked for anywhere,
not what one process happened to see.

Each keeps when it was last asked for (wall-clock seconds, comparable between hosts): the set keeps the
`CAPACITY` most recent, here and in Redis alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

CAPACITY = 256  # models kept fast at once (the most recently asked for): Envoy matches routes one by one

Pair = tuple[str, str, bool]  # (endpoint, model, whether it streams: a stream has its own route)


class HotModels:
    def __init__(self, clock: Callable[[], float] = time.time, capacity: int = CAPACITY, shared: bool = True) -> None:
        self._clock = clock
        self._capacity = capacity
        self._shared = shared  # False: no other process takes the notes (no state.redis), so none are kept for it
        self._asked: dict[Pair, float] = {}  # when each was last asked for, here or (merged) anywhere
        self._noted: dict[Pair, float] = {}  # asked for here since the last `take_noted`: what to share
        self._watchers: list[Callable[[], None]] = []

    def watch(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever a pair joins the set (from the loop that noted or merged it)."""
        self._watchers.append(callback)

    def note(self, endpoint: str, model: str, streams: bool = False) -> None:
        """A request the full path served that could have gone fast (called per request: kept cheap)."""
        pair, now = (endpoint, model, streams), self._clock()
        if self._shared:
            self._noted[pair] = now
        new = pair not in self._asked
        self._asked[pair] = now
        if new:
            self._joined()

    def merge(self, asked: Iterable[tuple[Pair, float]]) -> None:
        """What other processes noted, with when: a pair's newest time wins."""
        new = False
        for pair, when in asked:
            before = self._asked.get(pair)
            if before is None or when > before:
                self._asked[pair] = when
                new = new or before is None
        if new:
            self._joined()

    def take_noted(self) -> dict[Pair, float]:
        """What this process noted since the last call (each pair once, with its newest time)."""
        noted, self._noted = self._noted, {}
        return noted

    def recent(self) -> list[Pair]:
        """The hot pairs, the most recently asked for first (ties in a stable order)."""
        return sorted(self._asked, key=lambda pair: (-self._asked[pair], pair))

    def _joined(self) -> None:
        if len(self._asked) > self._capacity:  # the least recently asked for go
            for pair in sorted(self._asked, key=self._asked.__getitem__)[:len(self._asked) - self._capacity]:
                del self._asked[pair]
        for callback in self._watchers:
            callback()
