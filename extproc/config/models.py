"""The `models`, `aliases` and `fallbacks` sections: the built-in catalog merged with the user's models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from extproc.config.data import builtin_catalog_data
from extproc.config.problems import keep, report
from extproc.config.values import (
    boolean,
    choice,
    mapping,
    non_negative_int,
    non_negative_number,
    reject_unknown,
    string,
    string_list,
)
from extproc.core.catalog import CAPABILITIES, MODES, STATUSES, ModelSpec
from extproc.core.errors import ConfigError

_MODEL_KEYS = set(ModelSpec.__dataclass_fields__) - {"discovered"}


def parse_models(raw: Any, providers: Collection[str], broken: Collection[str] = (),
                 served: Mapping[str, Mapping[str, Collection[str]]] | None = None) -> tuple[ModelSpec, ...]:
    """The catalog with the user's entries merged in; an entry with an error is left out (its error reported).
    `served`: provider → the model ids it serves by deployment (Azure's, a cloud's), each with the catalog's facts of
    that id, and the endpoints it is served on when not all of the provider's (empty: all).
    A model of a `broken` provider (named in the config, its own errors reported already) is checked for errors of
    its own, but its provider is not reported again, nor offered as a valid name."""
    if not isinstance(raw, list):
        report(ConfigError("models: expected a list of model entries (each with at least id and provider)"))
        raw = []
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in builtin_catalog_data():
        merged[(entry["provider"], entry["id"])] = dict(entry)
    for provider, ids in (served or {}).items():
        for model_id, endpoints in ids.items():
            facts = next((e for (_, m), e in merged.items() if m == model_id), {})  # the same model elsewhere
            merged.setdefault((provider, model_id), {**facts, "id": model_id, "provider": provider,
                                                     "endpoints": sorted(endpoints)})
    for i, entry in enumerate(raw):
        found = keep(None, _user_entry, entry, f"models[{i}]", merged)
        if found is not None:
            provider, model_id = found
            merged.setdefault((provider, model_id), {}).update(entry, provider=provider)
    models = []
    for (provider, model_id), entry in merged.items():
        key = f"models[{model_id}]"
        if provider not in providers and provider not in broken:
            report(ConfigError(f"{key}.provider: {provider!r} is not a configured provider; "
                               f"declare it under providers or use one of {', '.join(sorted(providers))}"))
            continue
        spec = keep(None, _model, entry, key)
        if spec is not None:
            models.append(spec)
    return tuple(models)


def _user_entry(entry: Any, key: str, merged: Mapping[tuple[str, str], Any]) -> tuple[str, str]:
    """(provider, id) of one user entry: the provider may be left out for a model only one provider has."""
    entry = mapping(entry, key)
    reject_unknown(entry, key, _MODEL_KEYS)
    model_id = string(entry.get("id"), f"{key}.id")
    provider = entry.get("provider")
    if provider is None:
        owners = [p for (p, m) in merged if m == model_id]
        if len(owners) != 1:
            raise ConfigError(f"{key}.provider: required for {model_id!r} (it is not a single catalog model)")
        provider = owners[0]
    return str(provider), model_id


def _model(entry: Mapping[str, Any], key: str) -> ModelSpec:
    caps = string_list(entry.get("capabilities", ["streaming"]), f"{key}.capabilities", CAPABILITIES)
    created = entry.get("created")
    if isinstance(created, str):
        try:
            created = dt.date.fromisoformat(created)
        except ValueError as exc:
            raise ConfigError(f"{key}.created: expected a date like 2025-09-29") from exc
    elif created is not None and not isinstance(created, dt.date):
        raise ConfigError(f"{key}.created: expected a date like 2025-09-29")
    return ModelSpec(
        id=string(entry.get("id"), f"{key}.id"),
        provider=string(entry.get("provider"), f"{key}.provider"),
        mode=choice(entry.get("mode", "chat"), f"{key}.mode", tuple(sorted(MODES))),
        context_window=non_negative_int(entry.get("context_window", 0), f"{key}.context_window"),
        max_output_tokens=non_negative_int(entry.get("max_output_tokens", 0), f"{key}.max_output_tokens"),
        input_price=non_negative_number(entry.get("input_price", 0.0), f"{key}.input_price"),
        output_price=non_negative_number(entry.get("output_price", 0.0), f"{key}.output_price"),
        cache_read_price=_price(entry, "cache_read_price", key),
        cache_write_price=_price(entry, "cache_write_price", key),
        capabilities=frozenset(caps),
        status=choice(entry.get("status", "active"), f"{key}.status", tuple(sorted(STATUSES))),
        created=created,
        translation=boolean(entry.get("translation", True), f"{key}.translation"),
        endpoints=frozenset(string_list(entry["endpoints"], f"{key}.endpoints")) if entry.get("endpoints") else None,
    )


def _price(entry: Mapping[str, Any], name: str, key: str) -> float | None:
    return None if entry.get(name) is None else non_negative_number(entry[name], f"{key}.{name}")


def parse_aliases(raw: Any, known: set[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name, target in keep({}, mapping, raw, "aliases").items():
        if keep(False, _alias, str(name), target, known):
            aliases[str(name)] = target
    return aliases


def _alias(name: str, target: Any, known: set[str]) -> bool:
    key = f"aliases.{name}"
    target = string(target, key)
    if name in known:
        raise ConfigError(f"{key}: {name!r} is already a model id; pick another alias name")
    if target not in known:
        raise ConfigError(f"{key}: target {target!r} is not a known model; add it under models "
                          f"or use an id that `extproc models` lists")
    return True


def parse_fallbacks(raw: Any, known: set[str]) -> dict[str, tuple[str, ...]]:
    chains: dict[str, tuple[str, ...]] = {}
    for name, chain in keep({}, mapping, raw, "fallbacks").items():
        found = keep(None, _chain, str(name), chain, known)
        if found is not None:
            chains[str(name)] = found
    return chains


def _chain(name: str, chain: Any, known: set[str]) -> tuple[str, ...]:
    key = f"fallbacks.{name}"
    if name not in known:
        raise ConfigError(f"{key}: {name!r} is not a known model or alias")
    if not chain:
        raise ConfigError(f"{key}: expected a non-empty list of model ids to try in order")
    for i, target in enumerate(string_list(chain, key)):
        if target not in known:
            report(ConfigError(f"{key}[{i}]: {target!r} is not a known model or alias"))
    return tuple(chain)
