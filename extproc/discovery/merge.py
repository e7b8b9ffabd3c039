"""Merging providers' lists with the catalog. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from extproc.core.catalog import CAPABILITIES, ModelSpec
from extproc.discovery.parse import Listed


def merge_discovered(catalog: tuple[ModelSpec, ...], lists: Mapping[str, tuple[Listed, ...]],
                     reserved: frozenset[str] = frozenset()) -> tuple[ModelSpec, ...]:
    """The catalog plus every listed model it does not know, marked as discovered.

    Names in `reserved` (the aliases) stay the operator's: a provider listing that id does not take it over.

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
            extra.append(ModelSpec(id=item.id, provider=provider, mode=item.mode, context_window=item.context_window,
                                   max_output_tokens=item.max_output_tokens, capabilities=caps & CAPABILITIES,
                                   created=item.created, discovered=True))
    return catalog + tuple(extra)
