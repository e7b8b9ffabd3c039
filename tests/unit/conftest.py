"""Unit-test speed: parse the built-in YAML data once per session instead of on every parse_settings.

The real loaders run once; each call then gets a deep copy, so no test can leak changes into another.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import extproc.config.models
import extproc.config.providers
from tests.clock import Clock


def _memoized(load: Callable[[], Any]) -> Callable[[], Any]:
    cached = functools.cache(load)
    return lambda: copy.deepcopy(cached())


@pytest.fixture(scope="session", autouse=True)
def _cache_builtin_data() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for module, name in ((extproc.config.models, "builtin_catalog_data"),
                             (extproc.config.providers, "builtin_provider_data")):
            mp.setattr(module, name, _memoized(getattr(module, name)))
        yield


@pytest.fixture
def clock() -> Clock:
    """A clock set by hand, at a fixed moment."""
    return Clock()
