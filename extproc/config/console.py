"""The `console` section: where the web console's usage figures are kept (`console.usage_store`)."""

from __future__ import annotations

from typing import Any

from extproc.config.values import section
from extproc.core.errors import ConfigError
from extproc.core.settings import USAGE_STORE_AUTO, USAGE_STORE_OFF, USAGE_STORE_REDIS, USAGE_STORE_SQLITE

_HOW = ("console.usage_store: expected false (usage kept only in the log), redis (needs state.redis), sqlite "
        "(a file beside auth.store), or the path of a SQLite file")


def parse_console(raw: Any, redis: bool) -> str:
    """`console.usage_store` as Settings keeps it: auto (Redis with state.redis, else SQLite beside auth.store),
    off, redis, sqlite, or a file's path."""
    value = section(raw, "console", {"usage_store"}).get("usage_store", USAGE_STORE_AUTO)
    if value is False or value == USAGE_STORE_OFF:
        return USAGE_STORE_OFF
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_HOW}; got {value!r}")
    if value == USAGE_STORE_REDIS and not redis:
        raise ConfigError("console.usage_store: redis needs state.redis.url; set state.redis, or remove "
                          "console.usage_store to keep usage in a SQLite file beside auth.store")
    if value in (USAGE_STORE_AUTO, USAGE_STORE_REDIS, USAGE_STORE_SQLITE):
        return value
    if value.endswith("/"):
        raise ConfigError(f"console.usage_store: {value!r} is a directory; name a file in it, e.g. "
                          f"{value}usage.sqlite3")
    return value
