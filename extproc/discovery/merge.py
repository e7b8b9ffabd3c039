"""Merging providers' lists with the catalog. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from extproc.core.catalog import CAPABILITIES, ModelSpec
from extproc.core.providers import ProviderSpec
from extproc.discovery.parse import Listed
from extproc.formats import SPECS


def merge_discovered(catalog: tuple[ModelSpec, ...], lists: Mapping[str, tuple[Listed, ...]],
                     reserved: frozenset[str] = frozenset(),
                     providers: Mapping[str, ProviderSpec] | None = None) -> tuple[ModelSpec, ...]:
    """The catalog plus every listed model it does not know, marked as discovered.

    Names in `reserved` (the aliases) stay the operator's: a provider listing that id does not take it over.
    A model whose list names the paths it is served on (Copilot) is served on those endpoints only.

    Catalog metadata wins for models it knows (it carries prices and capabilities the lists lack);
    catalog models a provider does not list stay: a list can be partial for one key or one region.
    """
    known = {(m.provider, m.id) for m in catalog}
    extra = []
    for provider, listed in lists.items():
        for item in listed:
            if (provider, item.id) in known or item.id in reserved:
                continue
            known.add((provider, item.id))
            caps = frozenset() if item.mode == "embedding" else frozenset({"streaming"})
            spec = (providers or {}).get(provider)
            endpoints = endpoint_names(spec, item.paths) if spec is not None and item.paths is not None else None
            extra.append(ModelSpec(id=item.id, provider=provider, mode=item.mode, context_window=item.context_window,
                                   max_output_tokens=item.max_output_tokens,
                                   capabilities=(caps if item.capabilities is None else item.capabilities)
                                   & CAPABILITIES, created=item.created, discovered=True, endpoints=endpoints))
    return catalog + tuple(extra)


def endpoint_names(provider: ProviderSpec, paths: tuple[str, ...]) -> frozenset[str]:
    """The endpoint names of the provider paths a model list names (`/v1/messages` → messages on a provider whose
    anthropic API lives at /v1), from the client-API table and the provider's prefixes; a path no endpoint has
    (a websocket's `ws:/responses`) names none."""
    named = {route.path_prefix + spec.pattern[len(spec.client_prefix):]: spec.endpoint
             for spec in SPECS if not spec.model_in_path and (route := provider.apis.get(spec.api)) is not None}
    return frozenset(named[p] for p in paths if p in named)
