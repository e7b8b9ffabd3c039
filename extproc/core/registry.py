"""The immutable registry: which models exist, who serves them, and which credentials can serve them.

It is compiled once from Settings and swapped whole; per-credential health lives in `health.Health`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from extproc.core.catalog import ModelSpec
from extproc.core.providers import ProviderSpec
from extproc.core.settings import Credential, Settings

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Registry:
    models: tuple[ModelSpec, ...]
    providers: Mapping[str, ProviderSpec]
    credentials: Mapping[str, tuple[Credential, ...]]  # provider → credentials, in priority order
    aliases: Mapping[str, str]
    fallbacks: Mapping[str, tuple[str, ...]]
    strategy: str
    _by_name: Mapping[str, tuple[ModelSpec, ...]]
    _memo: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, extra_credentials: tuple[Credential, ...] = (),
              models: tuple[ModelSpec, ...] | None = None) -> Registry:
        """`models` replaces the configured catalog (e.g. merged with what discovery found)."""
        models = settings.models if models is None else models
        by_name: dict[str, list[ModelSpec]] = {}
        for model in models:
            by_name.setdefault(model.id, []).append(model)
            by_name.setdefault(model.qualified, []).append(model)
        creds: dict[str, list[Credential]] = {name: [] for name in settings.providers}
        for cred in (*settings.credentials, *extra_credentials):
            creds[cred.provider].append(cred)
        for name, listed in creds.items():
            if settings.providers[name].prefer == "login":
                listed.sort(key=lambda c: c.account is None)  # stable: logins first, each group in order
        return cls(
            models=models,
            providers=settings.providers,
            credentials={p: tuple(c) for p, c in creds.items()},
            aliases=settings.aliases,
            fallbacks=settings.fallbacks,
            strategy=settings.strategy,
            _by_name={name: tuple(specs) for name, specs in by_name.items()},
        )

    def lookup(self, name: str) -> tuple[ModelSpec, ...]:
        """Models a name denotes: an exact id (possibly served by several providers) or provider/id."""
        return self._by_name.get(name, ())

    def credentials_for(self, model: ModelSpec) -> tuple[Credential, ...]:
        return self.credentials.get(model.provider, ())

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """Something derived from this registry alone, computed once (the registry never changes)."""
        if key not in self._memo:
            self._memo[key] = compute()
        value: _T = self._memo[key]
        return value
