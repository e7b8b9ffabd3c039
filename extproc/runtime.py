"""The gateway's one runtime snapshot and its holder.

A snapshot (validated settings, registry, logins, discovered lists) never changes; publishing a change
builds a new one and swaps it in with one assignment, so a reader sees all of the old or all of the new.
A request reads the snapshot once, and learns from its response against that same snapshot. Health is
the one shared mutable object beside it (cooldowns and suspensions), with its own narrow interface.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.settings import Credential, Settings
from extproc.core.windows import WindowState
from extproc.discovery.merge import merge_discovered
from extproc.discovery.parse import Listed


@dataclass(frozen=True, slots=True)
class Snapshot:
    settings: Settings
    registry: Registry
    logins: tuple[Credential, ...] = ()
    discovered: Mapping[str, tuple[Listed, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, logins: tuple[Credential, ...] = (),
              discovered: Mapping[str, tuple[Listed, ...]] | None = None) -> Snapshot:
        discovered = discovered or {}
        models = merge_discovered(settings.models, discovered, frozenset(settings.aliases), settings.providers)
        return cls(settings, Registry.build(settings, extra_credentials=logins, models=models), logins, discovered)

    def with_logins(self, logins: tuple[Credential, ...]) -> Snapshot:
        return Snapshot.build(self.settings, logins, self.discovered)

    def with_discovered(self, discovered: Mapping[str, tuple[Listed, ...]]) -> Snapshot:
        return Snapshot.build(self.settings, self.logins, discovered)


class Runtime:
    """Holds the current snapshot and the shared health state; the only place either is replaced."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._current = Snapshot.build(settings)
        self.health = Health(settings.health)
        self.clock = clock
        self._suspended_logins: frozenset[str] = frozenset()
        self.shared_state: Callable[[], str] = lambda: "local: state.redis is not set"  # for /readyz

    @property
    def current(self) -> Snapshot:
        return self._current

    def publish_settings(self, settings: Settings) -> None:
        """A reloaded configuration: the same logins and discovered lists under the new settings."""
        current = self._current
        self._current = Snapshot.build(settings, current.logins, current.discovered)
        self.health.set_policy(settings.health)

    def publish_discovered(self, lists: Mapping[str, tuple[Listed, ...]]) -> None:
        self._current = self._current.with_discovered(lists)

    def publish_logins(self, logins: tuple[Credential, ...], suspended: Mapping[str, str],
                       windows: Mapping[str, WindowState] | None = None) -> None:
        """Every account becomes a credential; a suspended one stays listed, and unavailable with its reason.

        Only an account that was suspended and is active again is reinstated: a store write must not
        wipe the short cooldowns health keeps for logins whose token endpoint is failing. Windows a login
        reported before (another process, or before a restart) count until their reset, unless this process
        has heard newer.
        """
        self._current = self._current.with_logins(logins)
        now = self.clock()
        for cred_id, state in (windows or {}).items():
            if self.health.windows(cred_id) is None and state.resets_at is not None and state.resets_at > now:
                self.health.window(cred_id, state, now, self._current.settings.rotate_at)
        for cred in logins:
            if cred.id in suspended:
                self.health.suspend(cred.id, f"login suspended: {suspended[cred.id]}")
            elif cred.id in self._suspended_logins:
                self.health.reinstate(cred.id)
        self._suspended_logins = frozenset(suspended)

