"""The fast path's routes file: the models clients ask for, published as Envoy routes for as long as their
requests can go without the processor, rewritten (and moved into place, so Envoy reloads it) as health,
the configuration or the set of models asked for changes.

One process writes it: the one given the routes directory (worker 0); which models are hot it reads from the
`HotModels` every worker feeds (through Redis when several processes serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from extproc.bootstrap.fast import ROUTES_FILE, routes_document, routes_per_model
from extproc.bootstrap.listeners import route_configuration
from extproc.core.clients import ClientKey
from extproc.core.settings import Credential, Settings
from extproc.fast.hot import HotModels
from extproc.fast.routes import FastRoute, enabled, fast_route
from extproc.runtime import Runtime

log = logging.getLogger("extproc")
HEALTH_GAP = 0.02  # seconds: the changes that come this close together are written once
HEALTH_EVERY = 0.2  # seconds: at most so many writes for health (each plans every hot model again)
ENVOY_ROUTES = 1024  # Envoy routes for the hot models (with client keys, two per key and model): the most recent first
INTERVAL = 1.0  # seconds between two writes for new models, and between two looks at health (cooldowns end)
# Seconds between two looks at the budgets of the keys Envoy checks: a key whose budget is spent is out of the
# routes within this, the health write's gap and Envoy's reload (about half a second; docs/fast-path.md).
BUDGETS_EVERY = 0.25
OverBudget = Callable[[ClientKey], Awaitable[int | None]]  # seconds until a spent budget resets, else None


class LoginTokens(Protocol):
    """The logins' tokens as a route may carry them (the account manager: `route_token` hands out a token only
    while it is trusted and far enough from its expiry; `watch_tokens` says when one moved)."""

    def route_token(self, credential: Credential) -> str | None: ...

    def watch_tokens(self, callback: Callable[[], None]) -> None: ...


def write_routes(directory: str, document: bytes) -> None:
    """Whole or not at all: written beside, then moved into place (0600: it holds API keys)."""
    folder = Path(directory)
    partial = folder / f".{ROUTES_FILE}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(document)
    os.replace(partial, folder / ROUTES_FILE)  # Envoy reads it whole, or keeps the one it has


def initial_routes(settings: Settings, directory: str) -> None:
    """The file Envoy starts from: the processor's routes, no fast ones yet."""
    Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_routes(directory, routes_document(route_configuration(settings)))


async def _first(*events: asyncio.Event) -> None:
    """Until one of the events is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class FastPublisher:
    def __init__(self, runtime: Runtime, directory: str, hot: HotModels,
                 over_budget: OverBudget | None = None, tokens: LoginTokens | None = None) -> None:
        self._runtime = runtime
        self._directory = directory
        self._hot = hot
        self._over_budget = over_budget
        self._tokens = tokens  # without, a login's requests take the full path
        self._spent: frozenset[str] = frozenset()  # the keys whose budget is spent: their requests take the full path
        self._changed = asyncio.Event()  # a model to add: written within INTERVAL
        hot.watch(self._changed.set)
        self._health = asyncio.Event()  # health changed: written at once (a route may send to a cooling key)
        self._loop: asyncio.AbstractEventLoop | None = None
        runtime.health.watch(self._health_changed)
        if tokens is not None:  # a token refreshed, refused or withdrawn is written at once, as health is
            tokens.watch_tokens(self._health_changed)
        self._written: bytes | None = None
        self._routes: dict[tuple[str, str, bool], FastRoute] = {}  # what is published, by endpoint, model, streams
        self.published = 0  # fast routes in the file now

    def _health_changed(self) -> None:
        """From any thread (Health may be written from one): the event is the loop's to set."""
        if self._loop is None:
            self._health.set()
        else:
            self._loop.call_soon_threadsafe(self._health.set)

    def document(self) -> tuple[bytes, int]:
        snapshot, health = self._runtime.current, self._runtime.health
        settings, now = snapshot.settings, self._runtime.clock()
        routes: dict[tuple[str, str, bool], FastRoute] = {}
        if enabled(settings):
            room = ENVOY_ROUTES
            for key in self._hot.recent():  # the most recently asked for first
                endpoint, model, streams = key
                try:
                    route = fast_route(endpoint, model, snapshot.registry, health, now, settings, self._spent,
                                       streams=streams,
                                       tokens=self._tokens.route_token if self._tokens is not None else None)
                except Exception:  # that model takes the full path; the others stay fast
                    log.exception("fast path: no route for %s %s", endpoint, model)
                    continue
                if route is not None and routes_per_model(route) <= room:  # one planned as before keeps when
                    before = self._routes.get(key)  # it was planned
                    routes[key] = before if before is not None and route.same_plan(before) else route
                    room -= routes_per_model(route)
        self._routes = routes
        ordered = [routes[key] for key in sorted(routes)]  # the file as the same routes always write it
        return routes_document(route_configuration(settings, ordered)), len(routes)

    def publish(self) -> None:
        """Write what can go fast now; when that cannot be worked out, nothing goes fast."""
        try:
            document, count = self.document()
        except Exception:
            log.exception("fast path: routes could not be worked out; every request takes the full path")
            self._routes = {}
            document, count = routes_document(route_configuration(self._runtime.current.settings)), 0
        if document == self._written:
            return
        write_routes(self._directory, document)
        self._written, self.published = document, count
        log.debug("fast path: %d route(s) published", count)

    async def watch_budgets(self) -> None:
        """Takes a key out of the routes once its budget or its team's is spent, wherever it was spent (the spend is
        shared through state.redis), and back in when its period turns."""
        if self._over_budget is None:
            return
        unread = False  # said once per outage of the ledger, not four times a second
        while True:
            keys = [k for k in self._runtime.current.settings.clients.keys if k.checked_by_envoy and k.budgets]
            try:
                spent = frozenset([k.name for k in keys if await self._over_budget(k) is not None])
                unread = False
            except Exception:  # the ledger is unreachable: the keys stay as they were, and the full path says why
                if not unread:
                    log.exception("fast path: the client keys' spend could not be read; their routes stay as they "
                                  "are until it can")
                unread, spent = True, self._spent
            if spent != self._spent:
                log.info("fast path: client keys whose budget is spent (their requests take the full path): %s",
                         ", ".join(sorted(spent)) or "none")
                self._spent = spent
                self._health_changed()  # written at once, as a cooldown is
            await asyncio.sleep(BUDGETS_EVERY)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        written = 0.0
        while True:
            self._health.clear()
            try:
                self.publish()
            except OSError:  # never the end of the loop: the next look may succeed
                log.exception("fast path: the routes file could not be written")
            # A new model waits out the interval (at most one write a second, however many come); a health
            # change does not: between a cooldown and the write, the route still sends to that credential.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._health.wait(), INTERVAL)
            if self._health.is_set():  # a burst of changes (a storm of 429s) makes one write
                await asyncio.sleep(max(HEALTH_GAP, written + HEALTH_EVERY - self._loop.time()))
                written = self._loop.time()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._changed, self._health), INTERVAL)
            self._changed.clear()
