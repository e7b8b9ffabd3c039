"""Which usage store a configuration uses: Redis when `state.redis` is set (one set of figures for every replica),
else a SQLite file beside the accounts file (`console.usage_store` picks another file, or none)."""

from __future__ import annotations

import sqlite3

from extproc.core.settings import USAGE_STORE_AUTO, USAGE_STORE_OFF, USAGE_STORE_REDIS, Settings
from extproc.state.stores import usage_file
from extproc.usage.redis_store import RedisUsageStore
from extproc.usage.sqlite_store import SqliteUsageStore, open_file


def _in_redis(settings: Settings) -> bool:
    return settings.usage_store == USAGE_STORE_REDIS or (settings.usage_store == USAGE_STORE_AUTO
                                                         and settings.state_redis_url is not None)


def usage_store(settings: Settings) -> SqliteUsageStore | RedisUsageStore | None:
    """The store this configuration keeps usage in (None: only the log); raises RuntimeError naming the key."""
    if settings.usage_store == USAGE_STORE_OFF:
        return None
    if _in_redis(settings) and settings.state_redis_url:
        return RedisUsageStore(settings.state_redis_url, settings.state_prefix)
    path = usage_file(settings)
    try:
        return SqliteUsageStore(path)
    except (OSError, sqlite3.Error) as exc:
        raise _unusable(str(path), exc) from None


def check_usage_store(settings: Settings) -> None:
    """At start-up, before any worker runs: the SQLite file can be opened and written (RuntimeError if not)."""
    if settings.usage_store == USAGE_STORE_OFF or _in_redis(settings):
        return
    path = usage_file(settings)
    try:
        open_file(path).close()
    except (OSError, sqlite3.Error) as exc:
        raise _unusable(str(path), exc) from None


def _unusable(path: str, exc: Exception) -> RuntimeError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return RuntimeError(f"console.usage_store: cannot keep usage in {path} ({reason}); set console.usage_store to "
                        "the path of a file this user can write, or to false to keep usage only in the log")
