"""The account store in a real redis-server: encrypted at rest, no lost writes, one refresh at a time."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
import redis
from cryptography.fernet import Fernet

from extproc.auth.store import Account, StoreError
from extproc.state.token_store import RedisTokenStore
from tests.conftest import STATE_KEY, RedisServer

TOKEN = "at-very-secret-access-token"


@pytest.fixture
def prefix() -> str:
    return f"ts{time.monotonic_ns()}:"


def test_accounts_round_trip_encrypted_at_rest(redis_server: RedisServer, prefix: str) -> None:
    store = RedisTokenStore(redis_server.url, prefix, STATE_KEY)
    store.upsert(Account(id="claude-1", kind="claude", email="a@example.com", access_token=TOKEN, refresh_token="rt"))
    (back,) = store.load()
    assert back.access_token == TOKEN and back.email == "a@example.com" and back.created_at > 0
    raw = redis.Redis.from_url(redis_server.url).hget(f"{prefix}accounts", "claude-1")
    assert raw is not None and TOKEN.encode() not in raw and b"a@example.com" not in raw
    other_key = RedisTokenStore(redis_server.url, prefix, Fernet.generate_key().decode())
    with pytest.raises(StoreError, match="cannot be decrypted with state.redis.key") as caught:
        other_key.load()
    assert TOKEN not in str(caught.value)
    stamp = store.stamp()
    assert store.remove("claude-1") and store.get("claude-1") is None and store.stamp() != stamp


def test_concurrent_updates_lose_nothing(redis_server: RedisServer, prefix: str) -> None:
    store = RedisTokenStore(redis_server.url, prefix, STATE_KEY)
    store.upsert(Account(id="codex-1", kind="codex", plan="0"))

    def bump() -> None:
        for _ in range(20):
            store.update("codex-1", lambda a: replace(a, plan=str(int(a.plan or "0") + 1)))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = store.get("codex-1")
    assert stored is not None and stored.plan == "80"


def test_the_refresh_lock_lets_one_holder_at_a_time(redis_server: RedisServer, prefix: str) -> None:
    """While one replica holds the lock, another that tries it (its tries are Redis SETs, counted by the server)
    stays out; it gets in once the first lets go."""
    first, second = (RedisTokenStore(redis_server.url, prefix, STATE_KEY) for _ in range(2))
    server = redis.Redis.from_url(redis_server.url)

    def sets() -> int:
        return int(server.info("commandstats").get("cmdstat_set", {}).get("calls", 0))

    entered = threading.Event()

    def second_refreshes() -> None:
        with second.refresh_lock("claude-1"):
            entered.set()

    with first.refresh_lock("claude-1"):
        before = sets()
        thread = threading.Thread(target=second_refreshes)
        thread.start()
        deadline = time.monotonic() + 30
        while sets() < before + 2:  # a second try: the first one found the lock held
            assert time.monotonic() < deadline, "the second replica never tried the lock again"
            time.sleep(0.01)
        assert not entered.is_set(), "two holders at once"
    thread.join(30)
    assert entered.is_set(), "the lock was not free once the first holder let go"
    server.close()


def test_an_unreachable_redis_is_a_store_error_naming_the_setting() -> None:
    from tests.conftest import free_port
    store = RedisTokenStore(f"redis://127.0.0.1:{free_port()}/0", "x:", STATE_KEY)
    with pytest.raises(StoreError, match="state.redis is unreachable"):
        store.load()


def test_a_refresh_made_while_redis_is_away_is_written_when_it_returns(redis_server: RedisServer,
                                                                         prefix: str) -> None:
    """The login keeps working (the token this process knows is refreshed), and the new pair reaches Redis once
    it is back: nothing is lost, and the spent refresh token is never written back."""
    import asyncio

    import httpx

    from extproc.auth.accounts import AccountManager, login_credential
    from tests.unit.test_accounts import FLOWS, TokenEndpoint

    store = RedisTokenStore(redis_server.url, prefix, STATE_KEY)
    store.upsert(Account(id="claude-1", kind="claude", access_token="a1", refresh_token="r1",
                         expires_at=time.time() - 1))
    endpoint = TokenEndpoint()

    async def run() -> str:
        manager = AccountManager(store, FLOWS, httpx.AsyncClient(transport=httpx.MockTransport(endpoint)))
        await manager.load()
        redis_server.stop()
        account = manager.accounts()[0]
        token = await manager.secret(login_credential(account, FLOWS["claude"]))
        redis_server.start()
        watcher = asyncio.create_task(manager.watch(every=0.05))
        deadline = time.monotonic() + 10
        while True:
            try:
                stored = store.get("claude-1")
            except StoreError:
                stored = None
            if stored is not None and stored.refresh_token == "r2":
                break
            assert time.monotonic() < deadline, "the refresh made while Redis was away was never written"
            await asyncio.sleep(0.05)
        watcher.cancel()
        return token

    assert asyncio.run(run()) == "a2" and endpoint.calls == ["r1"]
    stored = store.get("claude-1")
    assert stored is not None and stored.access_token == "a2" and stored.refresh_token == "r2"
