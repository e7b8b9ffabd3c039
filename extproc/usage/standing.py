"""Where each client key and team stands now against its limits: budget spent this period, requests and tokens
this minute. One reading for the two places that show it, the gauges in `/metrics` and the console's Keys page,
from the same shared counters the limits are checked against (so every worker and replica reads the same)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from extproc.core import rate
from extproc.core.budget import Budget, period
from extproc.core.clients import ClientKey, token_counter
from extproc.state.rate_limit import RateLimiter
from extproc.state.spend import SpendLedger
from extproc.state.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class Owner:
    """A client key or a team with its limits, and the counter its counts and spend are kept under."""

    kind: str  # key | team
    name: str
    counter: str
    budget: Budget | None
    rpm: int | None
    tpm: int | None
    team: str | None = None  # a key's team
    models: tuple[str, ...] = ()  # a key's allowed model globs; empty: any


@dataclass(frozen=True, slots=True)
class Standing:
    """An owner and what its counters say now."""

    of: Owner
    spent: float = 0.0  # USD this period
    requests: float = 0.0  # this minute, as rpm is held against it
    tokens: float = 0.0  # … as tpm is


def owners(keys: Sequence[ClientKey]) -> list[Owner]:
    """Each key, then each team of these keys once."""
    found = [Owner("key", k.name, k.name, k.budget, k.rpm, k.tpm, k.team.name if k.team else None, k.models)
             for k in keys]
    teams = {k.team.name: k.team for k in keys if k.team is not None}
    return found + [Owner("team", t.name, t.counter, t.budget, t.rpm, t.tpm) for t in teams.values()]


async def standings(keys: Sequence[ClientKey], limiter: RateLimiter, spend: SpendLedger, tokens: TokenCounter,
                    now: float) -> list[Standing]:
    """Every owner's counts now; a count is read only for a limit the owner has."""
    found = []
    for who in owners(keys):
        spent = await spend.spent(who.counter, period(now, who.budget.per)[0]) if who.budget is not None else 0.0
        requests = await limiter.used(who.counter) if who.rpm is not None else 0.0
        used = rate.estimate(*(await tokens.counts([token_counter(who.counter)], now))[0], now) \
            if who.tpm is not None else 0.0
        found.append(Standing(who, spent, requests, used))
    return found
