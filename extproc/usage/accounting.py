"""Where usage records go: one log line each, the metrics, the client key's limits (budgets and tokens per minute,
its own and its team's: `limits.py`), and the usage store (the web console's figures).

Budgets are checked before a request is routed and charged when its answer is in; the record's cost is
what is charged, so a budget and the usage log always agree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from extproc import metrics
from extproc.core.clients import ClientKey
from extproc.state.spend import SpendLedger
from extproc.state.tokens import TokenCounter
from extproc.usage.limits import Limits
from extproc.usage.record import UsageRecord
from extproc.usage.store import UsageStore

log = logging.getLogger("extproc.usage")


class Accounting:
    def __init__(self, spend: SpendLedger | None = None, clock: Callable[[], float] = time.time,
                 store: UsageStore | None = None, tokens: TokenCounter | None = None) -> None:
        self.limits = Limits(spend, tokens, clock)
        self.spend: SpendLedger = self.limits.spend
        self.store = store  # None: usage kept nowhere but the log (console.usage_store: false)

    async def over_budget(self, client: ClientKey) -> int | None:
        """Seconds until the key's budget (or its team's) resets when it is spent, else None."""
        refusal = await self.limits.budget_refusal(client)
        return None if refusal is None else refusal.retry_after

    def record(self, rec: UsageRecord, client: ClientKey | None) -> None:
        if log.isEnabledFor(logging.INFO):  # the record's fields only for a line that is written
            log.info("usage rid=%s client=%s status=%d served=%s cost=%.6f", rec.request_id, rec.client or "-",
                     rec.status, rec.served or "-", rec.cost, extra={"fields": rec.doc()})
        _observe(rec)
        if self.store is not None:
            self.store.add(rec)  # into a batch in memory: written every second, off the request path
        if client is not None:
            self.limits.charge(rec, client)

    async def settle(self) -> None:
        """Wait for the charges still being written (at shutdown)."""
        await self.limits.settle()


def _observe(rec: UsageRecord) -> None:
    metrics.REQUESTS.labels(rec.outcome, str(rec.status), rec.client or "-").inc()
    if not rec.served:
        return
    labels = (rec.provider, rec.request_label, rec.response_label)
    error = "" if 200 <= rec.status < 400 else str(rec.status)
    metrics.REQUEST_DURATION.labels(*labels, error).observe(rec.latency)
    if rec.first_token is not None:
        metrics.TIME_TO_FIRST_TOKEN.labels(*labels).observe(rec.first_token)
    if rec.usage is not None:
        for kind, count in (("input", rec.usage.input), ("output", rec.usage.output),
                            ("cache_read", rec.usage.cache_read), ("cache_write", rec.usage.cache_write)):
            if count or kind in ("input", "output"):
                metrics.TOKEN_USAGE.labels(kind, *labels).observe(count)
    if rec.cost > 0:
        metrics.COST.labels(rec.client or "-").inc(rec.cost)
    if rec.route.startswith("fallback"):
        metrics.FALLBACKS.labels(rec.route).inc()
