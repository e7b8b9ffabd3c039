"""The one usage record of a request: who asked, what served it, how it went, what it used and cost. Pure.

A request's account (`account.py`) builds it when the request ends, whichever path it took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extproc.core.catalog import ModelSpec
from extproc.core.registry import Registry
from extproc.request.plan import parse_attempt_header, served_by
from extproc.usage.tokens import Usage


@dataclass(frozen=True, slots=True)
class Served:
    """Who served the request: its last attempt's header (ids only)."""

    model: ModelSpec | None
    provider: str
    credential: str
    attempts: int
    listed: bool = False  # a model the registry knows (not a name passed through as asked)


def served(registry: Registry, attempt_header: str, provider: str) -> Served:
    attempted = parse_attempt_header(attempt_header)
    if attempted is None:
        return Served(None, provider, "", 0)
    model, _, listed = served_by(registry, attempted.owner, attempted.model, attempted.credential)
    return Served(model, provider or model.provider, attempted.credential, attempted.attempt, listed)


def known_name(registry: Registry, name: str) -> bool:
    """A model id or alias of this registry: one a client could not make up (a metric label may carry it)."""
    return bool(registry.lookup(name)) or name in registry.aliases


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    client: str
    api: str
    requested: str
    served: str  # the model that served it ("" when none did)
    provider: str
    credential: str
    attempts: int
    status: int
    streamed: bool
    latency: float  # seconds, request to the end of its answer
    first_token: float | None  # seconds to the first byte of the answer
    usage: Usage | None
    cost: float  # USD
    route: str = ""  # why what served it was chosen: direct, alias, fallback:<strategy>
    bodies: tuple[tuple[str, str], ...] = ()  # with log.bodies: the prompt and the answer, secrets masked
    # Metric labels: what a client made up is "other", so a label never takes more values than the registry has.
    request_label: str = "other"
    response_label: str = "other"

    @property
    def outcome(self) -> str:
        if not self.served:
            return "rejected"  # the gateway answered itself; nothing went upstream
        return "served" if 200 <= self.status < 400 else "failed"

    def doc(self) -> dict[str, Any]:
        usage = self.usage or Usage()
        return {"kind": "usage", "request_id": self.request_id, "client": self.client or None, "api": self.api,
                "requested_model": self.requested, "served_model": self.served or None,
                "provider": self.provider or None, "credential": self.credential or None, "attempts": self.attempts,
                "status": self.status, "outcome": self.outcome, "route": self.route or None, "streamed": self.streamed,
                "latency_ms": round(self.latency * 1000, 1),
                "ttft_ms": None if self.first_token is None else round(self.first_token * 1000, 1),
                "input_tokens": usage.input, "output_tokens": usage.output, "cache_read_tokens": usage.cache_read,
                "cache_write_tokens": usage.cache_write, "reasoning_tokens": usage.reasoning,
                "cost_usd": round(self.cost, 8), **dict(self.bodies)}
