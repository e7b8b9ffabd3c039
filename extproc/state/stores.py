"""Which account store a configuration uses: Redis when `state.redis` is set, else the file."""

from __future__ import annotations

from extproc.auth.store import AccountStore, store_at
from extproc.core.settings import Settings


def account_store(settings: Settings) -> AccountStore:
    if settings.state_redis_url and settings.state_key:
        from extproc.state.token_store import RedisTokenStore

        return RedisTokenStore(settings.state_redis_url, settings.state_prefix, settings.state_key)
    return store_at(settings.auth_store)
