"""The fast path's routes file: the models clients ask for, published as Envoy routes for as long as their
requests can go without the processor, rewritten (and moved into place, so Envoy reloads it) as health,
the configuration or the set of models asked for changes.

One process writes it: the one `extproc up` gave the routes directory (worker 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

from extproc.bootstrap.fast import ROUTES_FILE, routes_document
from extproc.bootstrap.listeners import route_configuration
from extproc.core.settings import Settings
from extproc.fast_routes import enabled, fast_route
from extproc.runtime import Runtime

log = logging.getLogger("extproc")
CAPACITY = 256  # models kept fast at once (the most recently asked for): Envoy matches routes one by one
INTERVAL = 1.0  # seconds between two looks at health (cooldowns end with time)


def write_routes(directory: str, document: bytes) -> None:
    """Whole or not at all: written beside, then moved into place (0600: it holds API keys)."""
    folder = Path(directory)
    partial = folder / f".{ROUTES_FILE}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(document)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, folder / ROUTES_FILE)


def initial_routes(settings: Settings, directory: str) -> None:
    """The file Envoy starts from: the processor's routes, no fast ones yet."""
    Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_routes(directory, routes_document(route_configuration(settings)))


class FastPublisher:
    def __init__(self, runtime: Runtime, directory: str) -> None:
        self._runtime = runtime
        self._directory = directory
        self._hot: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._changed = asyncio.Event()
        self._written: bytes | None = None
        self.published = 0  # fast routes in the file now

    def note(self, endpoint: str, model: str) -> None:
        """A request the full path served that could have gone fast: its model is published soon."""
        key = (endpoint, model)
        if key in self._hot:
            self._hot.move_to_end(key)
            return
        self._hot[key] = None
        while len(self._hot) > CAPACITY:
            self._hot.popitem(last=False)
        self._changed.set()

    def document(self) -> tuple[bytes, int]:
        snapshot, health = self._runtime.current, self._runtime.health
        settings, now = snapshot.settings, self._runtime.clock()
        routes = []
        if enabled(settings):
            for endpoint, model in self._hot:
                route = fast_route(endpoint, model, snapshot.registry, health, now, settings)
                if route is not None:
                    routes.append(route)
        return routes_document(route_configuration(settings, routes)), len(routes)

    def publish(self) -> None:
        document, count = self.document()
        if document == self._written:
            return
        write_routes(self._directory, document)
        self._written, self.published = document, count
        log.debug("fast path: %d route(s) published", count)

    async def run(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:  # never the end of the loop: the next look may succeed
                log.exception("fast path: the routes file could not be written")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), INTERVAL)
            self._changed.clear()
