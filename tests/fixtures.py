"""Fixtures the unit and integration tests share (each conftest imports them).

Speed: the package's built-in YAML data (providers, catalog, login flows) is parsed once per session instead of
on every parse_settings. The real loaders run once; each call then gets a deep copy, so no test can leak changes
into another.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import extproc.config  # noqa: F401  (every module that reads the built-in data, loaded)
import extproc.config.data
from tests.clock import Clock

LOADERS = ("builtin_provider_data", "builtin_catalog_data", "builtin_flow_data")


def _memoized(load: Callable[[], Any]) -> Callable[[], Any]:
    cached = functools.cache(load)

    def parsed_once() -> Any:
        return copy.deepcopy(cached())

    return parsed_once


def _holders(load: Callable[[], Any]) -> list[ModuleType]:
    """The modules that hold the loader: where it is defined and where it was imported by name."""
    return [module for name, module in list(sys.modules.items())
            if (name == "extproc" or name.startswith("extproc.")) and getattr(module, load.__name__, None) is load]


@pytest.fixture(scope="session", autouse=True)
def builtin_data_parsed_once() -> Iterator[None]:
    # Both conftests import this fixture; in a session that runs both folders the second finds the loaders
    # memoized already and has nothing to do.
    with pytest.MonkeyPatch.context() as mp:
        for name in LOADERS:
            load = getattr(extproc.config.data, name)
            if load.__name__ == "parsed_once":
                continue
            memoized = _memoized(load)
            for module in _holders(load):
                mp.setattr(module, name, memoized)
        yield


@pytest.fixture
def clock() -> Clock:
    """A clock set by hand, at a fixed moment."""
    return Clock()
