"""The account store in Redis (`state.redis`), for replicas that share logins.

One hash holds every account, each encrypted at rest with Fernet (the `cryptography` package) under the key
`state.redis.key` names; a version counter tells watchers that something changed. Every write is an
optimistic transaction (WATCH/MULTI), so a rotated refresh token is never lost to a concurrent write, and a
lock (Redis's own, from the `redis` package) makes one replica at a time refresh a login: the others wait,
then find the new token and adopt it instead of spending the refresh token again.

Blocking by design, like the file store: async callers wrap calls in asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import redis
from cryptography.fernet import Fernet, InvalidToken
from redis.exceptions import LockError, RedisError, WatchError

from extproc.auth.store import (
    REFRESH_LOCK_WAIT,
    Account,
    AccountNotFound,
    RefreshLockBusy,
    StoreError,
    account_doc,
    account_from_doc,
)

_LOCK_SECONDS = 60.0  # longer than a token refresh takes; a replica that dies holding it frees it by then


class RedisTokenStore:
    def __init__(self, url: str, prefix: str, key: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._fernet = Fernet(key.encode())
        self._hash = f"{prefix}accounts"
        self._version = f"{prefix}accounts:version"
        self._lock_prefix = f"{prefix}lock:refresh:"
        self.path = Path(f"redis:{prefix}accounts")  # how messages name this store

    # -- the store

    def load(self) -> list[Account]:
        with self._errors():
            raw = self._redis.hgetall(self._hash)
        accounts = [self._decode(k.decode() if isinstance(k, bytes) else str(k), v) for k, v in raw.items()]
        return sorted(accounts, key=lambda a: (a.created_at, a.id))

    def get(self, account_id: str) -> Account | None:
        with self._errors():
            raw = self._redis.hget(self._hash, account_id)
        return None if raw is None else self._decode(account_id, raw)

    def upsert(self, account: Account) -> Account:
        if not account.id or not account.kind:
            raise ValueError("an Account needs a non-empty id and kind")

        def change(existing: Account | None) -> Account:
            now = time.time()
            return replace(account, created_at=existing.created_at if existing else now, updated_at=now)

        return self._transact(account.id, change)

    def update(self, account_id: str, change: Callable[[Account], Account]) -> Account:
        def checked(existing: Account | None) -> Account:
            if existing is None:
                raise AccountNotFound(f"no account {account_id!r} in {self.path}; log in again to add it")
            changed = change(existing)
            if changed.id != account_id:
                raise ValueError(f"update() may not change an account's id ({account_id!r} → {changed.id!r})")
            return replace(changed, updated_at=time.time())

        return self._transact(account_id, checked)

    def remove(self, account_id: str) -> bool:
        with self._errors(), self._redis.pipeline() as pipe:
            pipe.hdel(self._hash, account_id)
            pipe.incr(self._version)
            removed, _ = pipe.execute()
        return bool(removed)

    def stamp(self) -> object:
        with self._errors():
            return self._redis.get(self._version)

    @contextlib.contextmanager
    def refresh_lock(self, account_id: str) -> Iterator[None]:
        lock = self._redis.lock(self._lock_prefix + account_id, timeout=_LOCK_SECONDS,
                                blocking_timeout=REFRESH_LOCK_WAIT, thread_local=False)
        with self._errors():
            acquired = lock.acquire()
        if not acquired:  # the store works: another replica is refreshing (never a reason to refresh unlocked)
            raise RefreshLockBusy(f"another replica is refreshing {account_id}")
        try:
            yield
        finally:
            with contextlib.suppress(LockError, RedisError):
                lock.release()

    # -- inside

    def _transact(self, account_id: str, change: Callable[[Account | None], Account]) -> Account:
        with self._errors(), self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._hash)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(self._hash, account_id)
                    stored = change(None if raw is None else self._decode(account_id, raw))
                    pipe.multi()
                    pipe.hset(self._hash, account_id, self._fernet.encrypt(orjson.dumps(account_doc(stored))))
                    pipe.incr(self._version)
                    pipe.execute()
                    return stored
                except WatchError:
                    continue  # another writer got there first: read again and apply the change to theirs

    def _decode(self, account_id: str, raw: bytes | str) -> Account:
        try:
            doc = orjson.loads(self._fernet.decrypt(raw.encode() if isinstance(raw, str) else raw))
        except InvalidToken:
            raise StoreError(f"{self.path}: account {account_id} cannot be decrypted with state.redis.key; set the "
                             "key it was written with") from None
        except orjson.JSONDecodeError:
            raise StoreError(f"{self.path}: account {account_id} is not an account") from None
        return account_from_doc(f"{self.path} account {account_id}", doc)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:  # the message may name the server; never a token (none is in a command error)
            raise StoreError(f"state.redis is unreachable ({type(exc).__name__})") from None
