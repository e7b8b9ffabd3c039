"""What a client key may still spend: its budget and its team's, its tokens per minute (its own, per model, its
team's). Checked before a request is routed, charged from its usage record once it is answered.

A request is admitted while each count is under its limit and charged when its answer is in, so a count passes
its limit by at most what the requests in flight when it was reached use (every replica's): the bound
docs/configuration.md states.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from extproc.core import rate
from extproc.core.budget import period, seconds_to
from extproc.core.clients import ClientKey, over_budget, over_tokens
from extproc.core.errors import ClientError
from extproc.state.spend import LocalSpend, SpendLedger
from extproc.state.tokens import LocalTokens, TokenCounter
from extproc.usage.record import UsageRecord

_KEEP_PAST_PERIOD = 86400.0  # a period's spend is kept a day past its end: a late answer still counts


class Limits:
    def __init__(self, spend: SpendLedger | None = None, tokens: TokenCounter | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.spend: SpendLedger = spend or LocalSpend()
        self.tokens: TokenCounter = tokens or LocalTokens()
        self._clock = clock
        self._charges: set[asyncio.Task[None]] = set()

    async def budget_refusal(self, client: ClientKey) -> ClientError | None:
        """The 429 for a key whose budget, or whose team's, is spent (the one that resets last), else None."""
        now, found = self._clock(), None
        for counter, who, budget in client.budgets:
            name, reset = period(now, budget.per)
            if await self.spend.spent(counter, name) >= budget.usd:
                wait = seconds_to(reset, now)
                if found is None or wait > (found.retry_after or 0):
                    found = over_budget(who, budget, wait)
        return found

    async def token_refusal(self, client: ClientKey, model: str) -> ClientError | None:
        """The 429 for a request whose key, key on this model or team has used its tokens for this minute (the
        longest wait of them), else None. Nothing is counted: the usage is, once answered."""
        limits = client.token_limits(model)
        if not limits:
            return None
        now = self._clock()
        counts = await self.tokens.counts([counter for counter, _, _ in limits], now)
        found = None
        for (_, who, tpm), (previous, current) in zip(limits, counts, strict=True):
            if not rate.under(previous, current, now, tpm):
                wait = rate.wait_until_under(previous, current, now, tpm)
                if found is None or wait > (found.retry_after or 0):
                    found = over_tokens(who, tpm, wait)
        return found

    def charge(self, rec: UsageRecord, client: ClientKey) -> None:
        """Add a request's cost to its budgets and its tokens to its per-minute counts, in the background (held
        until written: a charge is never dropped half-way)."""
        now = self._clock()
        if rec.cost > 0:
            for counter, _, budget in client.budgets:
                name, reset = period(now, budget.per)
                self._later(self.spend.add(counter, name, rec.cost, reset - now + _KEEP_PAST_PERIOD))
        used = counted_tokens(rec)
        counters = [counter for counter, _, _ in client.token_limits(rec.requested)]
        if used and counters:
            self._later(self.tokens.add(counters, used, now))

    def _later(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._charges.add(task)
        task.add_done_callback(self._charges.discard)

    async def settle(self) -> None:
        """Wait for the charges still being written (at shutdown)."""
        if self._charges:
            await asyncio.gather(*self._charges, return_exceptions=True)


def counted_tokens(rec: UsageRecord) -> int:
    """What a request counts against tokens per minute: every input token (cached or not) and every output one,
    as providers count their own limits."""
    usage = rec.usage
    return 0 if usage is None else usage.input + usage.cache_read + usage.cache_write + usage.output
