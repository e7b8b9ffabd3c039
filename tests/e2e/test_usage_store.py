"""Usage kept for the web console, through the real stack: requests of every API and path reach the store (read
directly, as the console reads it), the figures survive the gateway's restart, and gateways sharing Redis keep one
set of figures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from extproc.usage.redis_store import RedisUsageStore
from extproc.usage.rollup import DAY, HOUR
from extproc.usage.sqlite_store import SqliteUsageStore
from extproc.usage.store import Point
from tests.conftest import STATE_KEY, RedisServer, Stack, provider_config
from tests.fakes import FakeProvider
from tests.waits import eventually

TEAM = "usage-store-team-key-0123456789"
CHAT = [{"role": "user", "content": "hi"}]
GPT_COST = (3 * 0.15 + 4 * 0.6) / 1e6  # the fake's usage (3 in, 4 out) at gpt-4o-mini's catalog prices


def requests(stack: Stack, tag: str) -> list[str]:
    """A non-streamed and a streamed OpenAI request, an Anthropic one, and one refused for want of a key."""
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0)
    oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT, extra_headers={"x-request-id": f"{tag}-oa"})
    for _ in oa.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True,
                                        extra_headers={"x-request-id": f"{tag}-stream"}):
        pass
    an = anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0)
    an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT,
                       extra_headers={"x-request-id": f"{tag}-an"})
    refused = httpx.post(f"{stack.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": CHAT},
                         headers={"x-request-id": f"{tag}-nokey"})
    assert refused.status_code == 401
    return [f"{tag}-oa", f"{tag}-stream", f"{tag}-an", f"{tag}-nokey"]


Held = tuple[list[Mapping[str, Any]], list[Point]]


def held(open_store: Callable[[], SqliteUsageStore | RedisUsageStore], ids: Sequence[str]) -> Held:
    """The store's records of these requests, once every one is written (each worker flushes every second), and
    today's totals per client, read as the console reads them."""
    async def read() -> Held | None:
        store = open_store()
        try:
            records = [r for r in await store.recent(100) if r["request_id"] in ids]
            if len(records) < len(ids):
                return None
            now = time.time()
            return records, list(await store.series(now - DAY, now + 1, HOUR, "client"))
        finally:
            await store.close()
    return eventually(lambda: asyncio.run(read()), f"the usage store holds {', '.join(ids)}")


def tokens(records: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    return sum(r["input_tokens"] for r in records), sum(r["output_tokens"] for r in records)


def by_client(points: Sequence[Point]) -> dict[str, tuple[int, int, int, int]]:
    summed: dict[str, tuple[int, int, int, int]] = {}
    for p in points:
        r, e, i, o = summed.get(p.value, (0, 0, 0, 0))
        summed[p.value] = (r + p.totals.requests, e + p.totals.errors, i + p.totals.input_tokens,
                           o + p.totals.output_tokens)
    return summed


def test_requests_reach_the_sqlite_file_beside_the_accounts_and_outlive_a_restart(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack], tmp_path: Path) -> None:
    config = {"providers": provider_config(fakes), "discovery": False,
              "auth": {"store": str(tmp_path / "accounts.json")},  # both gateways' usage file beside it
              "clients": {"keys": [{"name": "team", "key": TEAM}]}}
    stack = make_stack(config)
    ids = requests(stack, "usq")
    path = tmp_path / "usage.sqlite3"
    records, points = held(lambda: SqliteUsageStore(path), ids)
    seen = {r["request_id"]: r for r in records}
    assert (seen["usq-oa"]["client"], seen["usq-oa"]["served_model"], seen["usq-oa"]["input_tokens"]) == \
        ("team", "gpt-4o-mini", 3)
    assert seen["usq-oa"]["cost_usd"] == pytest.approx(GPT_COST)
    assert seen["usq-stream"]["streamed"] is True and seen["usq-an"]["provider"] == "anthropic"
    assert (seen["usq-nokey"]["status"], seen["usq-nokey"]["outcome"]) == (401, "rejected")
    totals = by_client(points)
    assert totals["team"] == (3, 0, *tokens(records))  # the totals are the records' own figures, added up
    assert totals["-"][:2] == (1, 1)  # the refused request: no key, an error
    assert TEAM.encode() not in path.read_bytes()  # the store holds a key's name, never the key
    assert stack.stop() == 0

    again = make_stack(config)  # the same file: what the first gateway counted is still there, and added to
    more = requests(again, "usq2")
    records, points = held(lambda: SqliteUsageStore(path), [*ids, *more])
    assert by_client(points)["team"] == (6, 0, *tokens(records))


def test_gateways_sharing_redis_keep_one_set_of_figures(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack], tmp_path: Path) -> None:
    prefix = f"usage{time.monotonic_ns()}:"
    config = {"providers": provider_config(fakes), "discovery": False, "processor": {"workers": 2},
              "clients": {"keys": [{"name": "team", "key": TEAM}]},
              "state": {"redis": {"url": redis_server.url, "prefix": prefix, "key": STATE_KEY}}}
    first, second = make_stack(config), make_stack(config)
    ids = requests(first, "urd1") + requests(second, "urd2")
    records, points = held(lambda: RedisUsageStore(redis_server.url, prefix), ids)
    assert by_client(points)["team"] == (6, 0, *tokens(records))
    assert not (first.config_path.parent / "usage.sqlite3").exists()  # Redis, not a file of each replica's
