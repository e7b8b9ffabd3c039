"""The package's built-in data: provider facts, the model catalog, login flows and the default config."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

DEFAULT_CONFIG_NAME = "default_config.yaml"


def _text(name: str) -> str:
    return resources.files("extproc.data").joinpath(name).read_text()


def default_config_text() -> str:
    return _text(DEFAULT_CONFIG_NAME)


def builtin_provider_data() -> dict[str, dict[str, Any]]:
    """The raw built-in provider table, to be merged with user config."""
    data: dict[str, dict[str, Any]] = yaml.safe_load(_text("providers.yaml"))["providers"]
    return data


def builtin_kind_data() -> dict[str, dict[str, Any]]:
    """The provider kinds a config may declare (`providers.X.kind`), each with its default facts."""
    kinds: dict[str, dict[str, Any]] = yaml.safe_load(_text("providers.yaml"))["kinds"]
    return kinds


def builtin_catalog_data() -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = yaml.safe_load(_text("catalog.yaml"))["models"]
    return models


def builtin_flow_data() -> dict[str, dict[str, Any]]:
    flows: dict[str, dict[str, Any]] = yaml.safe_load(_text("oauth.yaml"))["flows"]
    return flows
