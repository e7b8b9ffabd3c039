"""Tokens per minute and team budgets counted in a real redis-server: what one replica charges, the other refuses
by; the counts expire with their window; without Redis each process counts on its own."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from extproc.core.budget import Budget
from extproc.core.clients import ClientKey, Team
from extproc.state.spend import RedisSpend
from extproc.state.tokens import RedisTokens
from extproc.usage.limits import Limits
from extproc.usage.record import UsageRecord
from extproc.usage.tokens import Usage
from tests.conftest import RedisServer, free_port

CREW = Team("crew", budget=Budget(1.0, "month"), tpm=100)
ALICE = ClientKey("alice", tpm=60, team=CREW)
BOB = ClientKey("bob", team=CREW)


def answered(client: str, tokens: int, cost: float = 0.0) -> UsageRecord:
    return UsageRecord("rid", client, "openai", "gpt-5-mini", "gpt-5-mini", "openai", "openai:key1", 1, 200, False,
                       0.1, None, Usage(input=tokens - 1, output=1), cost)


def test_replicas_sharing_redis_refuse_by_what_either_charged(redis_server: RedisServer) -> None:
    prefix = f"tpm-{time.monotonic_ns()}:"

    async def run() -> list[str | None]:
        stores = [(RedisSpend(redis_server.url, prefix), RedisTokens(redis_server.url, prefix)) for _ in range(2)]
        first, second = (Limits(spend, tokens) for spend, tokens in stores)
        seen = []
        try:
            first.charge(answered("alice", 40), ALICE)
            await first.settle()
            seen.append(await second.token_refusal(ALICE, "gpt-5-mini"))  # 40 of her 60, 40 of the team's 100
            second.charge(answered("bob", 60, cost=1.0), BOB)
            await second.settle()
            for key in (ALICE, BOB):  # the team's 100 tokens and its $1, charged on two replicas
                tokens, budget = await first.token_refusal(key, "gpt-5-mini"), await first.budget_refusal(key)
                seen += [tokens and tokens.message, budget and budget.kind]
        finally:
            for spend, tokens in stores:
                await spend.close()
                await tokens.close()
        return seen

    seen = asyncio.run(run())
    assert seen[0] is None
    assert seen[1] is not None and seen[1].startswith("The team 'crew' of the client key 'alice' is over its 100")
    assert seen[2] == "budget_exceeded"
    assert seen[3] is not None and seen[3].startswith("The team 'crew' of the client key 'bob' is over")
    assert seen[4] == "budget_exceeded"
    shared = redis.Redis.from_url(redis_server.url)
    counts = {key.decode(): int(shared.get(key) or 0) for key in shared.scan_iter(f"{prefix}tpm:*")}
    assert sorted(counts.values()) == [40, 100]  # alice's own, and the team's
    assert all(0 < shared.ttl(key) <= 120 for key in counts)  # a minute's count outlives its window, no more


def test_without_redis_each_process_counts_tokens_on_its_own_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    tokens = RedisTokens(f"redis://127.0.0.1:{free_port()}/0", "nowhere:")
    limits = Limits(tokens=tokens)

    async def run() -> list[bool]:
        try:
            before = await limits.token_refusal(ALICE, "gpt-5-mini")
            limits.charge(answered("alice", 60), ALICE)
            await limits.settle()
            return [before is None, await limits.token_refusal(ALICE, "gpt-5-mini") is not None]
        finally:
            await tokens.close()

    with caplog.at_level(logging.WARNING, logger="extproc.state"):
        assert asyncio.run(run()) == [True, True]
    said = [r for r in caplog.records if "counted per process" in r.getMessage()]
    assert len(said) == 1
