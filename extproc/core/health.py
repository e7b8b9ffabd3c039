"""What upstream responses taught us about each credential: cooldowns and suspensions.

The only mutable state of the request path. All methods take `now` so the rules are testable
without sleeping; a lock keeps them safe if a thread ever shares the object with the event loop.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from extproc.core.settings import HealthPolicy
from extproc.core.windows import WindowState

_PRUNE_EVERY = 256


@dataclass(frozen=True, slots=True)
class Block:
    """Why a credential cannot serve a model right now, and until when (inf: until restart)."""

    kind: str  # "cooldown" | "suspended"
    until: float
    reason: str


class HealthView(Protocol):
    def blocked(self, credential_id: str, model_id: str, now: float, endpoint: str = "") -> Block | None: ...

    def strained(self, credential_id: str, now: float) -> bool: ...

    def windows(self, credential_id: str) -> WindowState | None: ...


@dataclass(slots=True)
class Cooldown:
    until: float
    failures: int
    reason: str
    since: float  # when this cooldown was set
    server_error: bool = False  # the provider failed (5xx, no answer), not a rate limit


# What health knows, as tables a sync edge can share between processes: (table, key) → entry, or None when
# the entry is gone. Keys are tuples of strings.
Change = tuple[str, tuple[str, ...], object | None]
TABLES = ("cooldowns", "suspended", "model_suspended", "missing", "exhausted", "strained", "windows")


class Health:
    def __init__(self, policy: HealthPolicy, on_change: Callable[[list[Change]], None] | None = None) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._on_change = on_change
        self._changes: list[Change] = []  # made under the lock, told after it
        self._cooldowns: dict[tuple[str, ...], Cooldown] = {}  # (credential, model)
        self._suspended: dict[tuple[str, ...], Block] = {}  # (credential,)
        self._model_suspended: dict[tuple[str, ...], Block] = {}  # (credential, model)
        self._missing: dict[tuple[str, ...], Block] = {}  # 404s: (credential, model, client endpoint)
        self._exhausted: dict[tuple[str, ...], Block] = {}  # a subscription window ran out: the account cools
        self._strained: dict[tuple[str, ...], float] = {}  # a window nearly full, until it resets: used last
        self._windows: dict[tuple[str, ...], WindowState] = {}  # each login's last reported windows
        self._tables: dict[str, dict[tuple[str, ...], Any]] = {
            "cooldowns": self._cooldowns, "suspended": self._suspended, "model_suspended": self._model_suspended,
            "missing": self._missing, "exhausted": self._exhausted, "strained": self._strained,
            "windows": self._windows}
        self._observed = 0
        self._watchers: list[Callable[[], None]] = []  # told that something changed, here or in another process

    def set_policy(self, policy: HealthPolicy) -> None:
        """A reloaded `health` section: what is learned from now on follows it."""
        self._policy = policy

    # -- changes: every write goes through these, so another process can be told

    def _put(self, table: str, key: tuple[str, ...], value: object) -> None:
        self._tables[table][key] = value
        self._changes.append((table, key, value))

    def _drop(self, table: str, key: tuple[str, ...]) -> None:
        if self._tables[table].pop(key, None) is not None:
            self._changes.append((table, key, None))

    def _told(self) -> None:
        """After the lock: hand the changes made under it to the listener (a sync edge), if any."""
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        if self._on_change is not None:
            self._on_change(changes)
        self._tell_watchers()

    def listen(self, on_change: Callable[[list[Change]], None] | None) -> None:
        self._on_change = on_change

    def watch(self, changed: Callable[[], None]) -> None:
        """Be told (no details) after any change, made here or applied from another process: what Envoy was
        given to act on by itself (the fast path's routes) must follow at once."""
        self._watchers.append(changed)

    def _tell_watchers(self) -> None:
        for changed in self._watchers:
            changed()

    def apply(self, changes: list[Change]) -> None:
        """Changes another process made: applied as they are, and not told again."""
        with self._lock:
            for table, key, value in changes:
                if table not in self._tables:
                    continue
                if value is None:
                    self._tables[table].pop(key, None)
                else:
                    self._tables[table][key] = value
        self._tell_watchers()

    def replace_all(self, changes: list[Change]) -> None:
        """Everything the shared store holds now, in place of what this process had: what others removed
        while it could not hear them (a lifted suspension) goes too. Not told again."""
        with self._lock:
            for table in self._tables.values():
                table.clear()
            for name, key, value in changes:
                if name in self._tables and value is not None:
                    self._tables[name][key] = value
        self._tell_watchers()

    def snapshot(self) -> list[Change]:
        """Everything known now, as changes (what a process joining late, or catching up, takes)."""
        with self._lock:
            return [(name, key, value) for name, table in self._tables.items() for key, value in table.items()]

    # -- reading

    def blocked(self, credential_id: str, model_id: str, now: float, endpoint: str = "") -> Block | None:
        """Why this credential cannot serve this model (through this client endpoint) now, if it cannot."""
        with self._lock:
            for suspended in (self._suspended.get((credential_id,)), self._exhausted.get((credential_id,)),
                              self._model_suspended.get((credential_id, model_id)),
                              self._missing.get((credential_id, model_id, endpoint))):
                if suspended is not None and suspended.until > now:
                    return suspended
            cooldown = self._cooldowns.get((credential_id, model_id))
            if cooldown is not None and cooldown.until > now:
                return Block("cooldown", cooldown.until, cooldown.reason)
            return None

    def strained(self, credential_id: str, now: float) -> bool:
        """Whether a subscription window of this credential is nearly full: serve with it only as a last resort."""
        with self._lock:
            return self._strained.get((credential_id,), 0.0) > now

    def windows(self, credential_id: str) -> WindowState | None:
        """The windows this credential's subscription reported last, if it reported any."""
        with self._lock:
            return self._windows.get((credential_id,))

    def blocks(self, now: float) -> list[tuple[str, str, Block]]:
        """Every block in force now, as (credential, model, block); model "" for a block of all its models (a
        suspension, an exhausted window): what the metrics show of the current state."""
        with self._lock:
            found = [(c, "", b) for table in (self._suspended, self._exhausted) for (c,), b in table.items()]
            found += [(k[0], k[1], b) for table in (self._model_suspended, self._missing) for k, b in table.items()]
            found += [(c, m, Block("cooldown", cd.until, cd.reason)) for (c, m), cd in self._cooldowns.items()]
        return [entry for entry in found if entry[2].until > now]

    def all_windows(self) -> dict[str, WindowState]:
        """Each credential's last reported windows, by credential id."""
        with self._lock:
            return {c: state for (c,), state in self._windows.items()}

    def remembers(self, credential_id: str, model_id: str) -> bool:
        """Whether this credential and model have a failure on record that a success should clear."""
        with self._lock:
            return (credential_id, model_id) in self._cooldowns

    def suspended_ids(self, now: float) -> set[str]:
        """Credentials out of rotation for every model (a 401, a login that cannot refresh), right now."""
        with self._lock:
            return {c for (c,), b in self._suspended.items() if b.until > now}

    def probe_targets(self, now: float) -> set[str]:
        """Credentials a probe could bring back before their block ends: suspended for every model until a
        known time (a 401, a login whose refresh failed for now), cooling after server errors, or an account
        whose subscription window ran out. A block until restart (a refused refresh) waits for a new login."""
        with self._lock:
            found = {c for (c,), b in self._suspended.items() if now < b.until < math.inf}
            found |= {c for (c,), b in self._exhausted.items() if b.until > now}
            found |= {k[0] for k, cd in self._cooldowns.items() if cd.server_error and cd.until > now}
            return found

    # -- learning

    def window(self, credential_id: str, state: WindowState, now: float, rotate_at: float) -> Block | None:
        """Learn a subscription's windows from an answer: exhausted cools the account (every model) until the
        window resets; nearly full (≥ rotate_at) puts it last until then; anything less clears both."""
        resets_at = state.resets_at if state.resets_at is not None and state.resets_at > now else None
        key = (credential_id,)
        try:
            with self._lock:
                if state.differs(self._windows.get(key)):  # a level moved, a reset, an exhaustion: worth telling
                    self._put("windows", key, state)
                if state.exhausted:
                    until = resets_at if resets_at is not None else now + self._policy.backoff_max
                    block = Block("cooldown", until, f"subscription window exhausted ({state.utilization:.0%} used)")
                    self._put("exhausted", key, block)
                    return block
                self._drop("exhausted", key)
                if state.utilization >= rotate_at:
                    strained = resets_at if resets_at is not None else now + self._policy.backoff_max
                    if self._strained.get(key) != strained:
                        self._put("strained", key, strained)
                else:
                    self._drop("strained", key)
                return None
        finally:
            self._told()

    def suspend(self, credential_id: str, reason: str, until: float = math.inf) -> None:
        """Take a credential out of rotation for every model (a login whose refresh was refused)."""
        with self._lock:
            self._put("suspended", (credential_id,), Block("suspended", until, reason))
        self._told()

    def reinstate(self, credential_id: str) -> None:
        with self._lock:
            self._drop("suspended", (credential_id,))
        self._told()

    def recovered(self, credential_id: str) -> None:
        """A probe found the credential taken again: lift what a probe can disprove (a suspension until a known
        time, server-error cooldowns); rate limits stay, their provider said when they end."""
        with self._lock:
            block = self._suspended.get((credential_id,))
            if block is not None and block.until < math.inf:
                self._drop("suspended", (credential_id,))
            for key in [k for k, c in self._cooldowns.items() if k[0] == credential_id and c.server_error]:
                self._drop("cooldowns", key)
        self._told()

    def observe(self, credential_id: str, model_id: str, status: int, retry_after: float | None,
                now: float, started: float | None = None, endpoint: str = "", failure: str = "") -> Block | None:
        """Learn from one upstream response status; returns the block it caused, if any.

        `started` is when the request was routed: a response to a request sent before the current
        cooldown began says nothing new (many in flight at once must not stack backoffs or clear it).
        `failure` says what a 5xx really was when no provider answered (refused, reset, timed out).
        """
        try:
            with self._lock:
                return self._observe(credential_id, model_id, status, retry_after, now, started, endpoint, failure)
        finally:
            self._told()

    def _observe(self, credential_id: str, model_id: str, status: int, retry_after: float | None,
                 now: float, started: float | None, endpoint: str, failure: str) -> Block | None:
        policy = self._policy
        key = (credential_id, model_id)
        self._observed += 1
        if self._observed % _PRUNE_EVERY == 0:
            self._prune(now)
        previous = self._cooldowns.get(key)
        stale = previous is not None and started is not None and started < previous.since
        if 200 <= status < 400:
            if not stale:
                self._drop("cooldowns", key)
            return None
        if status == 429:
            if stale and previous is not None:
                return Block("cooldown", previous.until, previous.reason)
            failures = previous.failures + 1 if previous else 1
            if retry_after is not None:
                seconds, why = retry_after, f"rate limited (429), retry-after {retry_after:g}s"
            else:
                seconds = min(policy.backoff_base * 2 ** min(failures - 1, 32), policy.backoff_max)
                why = f"rate limited (429), backoff {seconds:g}s"
            self._put("cooldowns", key, Cooldown(now + seconds, failures, why, now))
            return Block("cooldown", now + seconds, why)
        if status == 401:
            block = Block("suspended", now + policy.auth_suspension, "credential rejected (401)")
            self._put("suspended", (credential_id,), block)
            return block
        if status == 403:
            block = Block("suspended", now + policy.auth_suspension, "forbidden for this model (403)")
            self._put("model_suspended", key, block)
            return block
        if status == 404:  # per endpoint: a provider may serve a model on one endpoint and not another
            block = Block("suspended", now + policy.not_found_suspension, "model not found (404)")
            self._put("missing", (credential_id, model_id, endpoint), block)
            return block
        if status >= 500:
            seconds = retry_after if retry_after is not None else policy.server_error_cooldown
            if previous is not None and previous.until >= now + seconds:
                return Block("cooldown", previous.until, previous.reason)  # never shorten a longer cooldown
            why = failure or f"upstream error ({status})"
            failures = previous.failures if previous else 0
            self._put("cooldowns", key, Cooldown(now + seconds, failures, why, now, server_error=True))
            return Block("cooldown", now + seconds, why)
        return None  # other 4xx: the request's fault, not the credential's

    def _prune(self, now: float) -> None:
        """Forget what has expired: model ids come from clients, so these maps must not only grow. Each
        process prunes its own copy (no change is told: every copy expires the same entries)."""
        for name in ("cooldowns", "model_suspended", "missing", "suspended", "exhausted"):
            table = self._tables[name]
            for key in [k for k, v in table.items() if v.until <= now]:
                del table[key]
        for key in [k for k, until in self._strained.items() if until <= now]:
            del self._strained[key]


_MAX_RETRY_AFTER = 86400.0  # a day: beyond that an upstream's number is not a plan


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date), at most a day; None when absent."""
    seconds = _retry_after_seconds(headers, now)
    return None if seconds is None else min(max(0.0, seconds), _MAX_RETRY_AFTER)


def _retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    raw_ms = _number(headers.get("retry-after-ms"))
    if raw_ms is not None:
        return raw_ms / 1000
    raw = headers.get("retry-after")
    if not raw:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        return parsedate_to_datetime(raw).timestamp() - now
    except (TypeError, ValueError):
        return None


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return None if value is None or math.isnan(value) else value
