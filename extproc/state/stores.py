"""Which account store a configuration uses: Redis when `state.redis` is set, else the file. Vertex AI's shared
Google tokens live in a store of their own, beside it (never listed as logins)."""

from __future__ import annotations

from pathlib import Path

from extproc.auth.store import AccountStore, TokenStore, store_at
from extproc.core.settings import USAGE_STORE_AUTO, USAGE_STORE_OFF, USAGE_STORE_REDIS, USAGE_STORE_SQLITE, Settings


def account_store(settings: Settings) -> AccountStore:
    if settings.state_redis_url and settings.state_key:
        from extproc.state.token_store import RedisTokenStore

        return RedisTokenStore(settings.state_redis_url, settings.state_prefix, settings.state_key)
    return store_at(settings.auth_store)


GOOGLE_TOKENS_FILE = "google-tokens.json"


def google_token_store(settings: Settings) -> AccountStore:
    """Where Vertex AI credentials' access tokens are shared: Redis (encrypted) across replicas, else a 0600 file
    beside the accounts file, across the workers of one replica."""
    if settings.state_redis_url and settings.state_key:
        from extproc.state.token_store import RedisTokenStore

        return RedisTokenStore(settings.state_redis_url, f"{settings.state_prefix}google:", settings.state_key)
    return TokenStore(Path(store_at(settings.auth_store).path).with_name(GOOGLE_TOKENS_FILE))


USAGE_FILE = "usage.sqlite3"


def usage_file(settings: Settings) -> Path:
    """Where the web console's usage is kept without Redis: console.usage_store's file, else beside the accounts
    file (one replica's workers share it)."""
    if settings.usage_store not in (USAGE_STORE_AUTO, USAGE_STORE_SQLITE, USAGE_STORE_REDIS, USAGE_STORE_OFF):
        return Path(settings.usage_store).expanduser()
    return Path(store_at(settings.auth_store).path).with_name(USAGE_FILE)
