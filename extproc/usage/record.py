"""The one usage record of a request: who asked, what served it, how it went, what it used and cost. Pure.

The router-level exchange writes it for an answer that does not stream (and for a request the gateway
refused), the stream relay for one that does, and the access log for one Envoy served by itself (the fast
path); all build it here, from what each knows.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extproc.core.catalog import ModelSpec
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.request.plan import parse_attempt_header, served_by
from extproc.usage.cost import cost
from extproc.usage.tokens import Usage, document_of_keys, usage_of_document


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
class Asked:
    """What the router-level exchange knows of the request, passed to the relay in one header."""

    start: float  # wall clock, seconds
    client: str  # the client key's name, or ""
    requested: str
    hide_usage: bool = False  # the client's stream did not ask for its usage: the gateway's extra chunk is kept
    holds: bool = False  # the provider stores the answer (Responses, store on): who made it is remembered

    def header(self) -> str:
        quote = urllib.parse.quote
        return (f"{self.start!r} {quote(self.client, safe='')} {quote(self.requested, safe='')} "
                f"{int(self.hide_usage)} {int(self.holds)}")

    @classmethod
    def parse(cls, value: str) -> Asked | None:
        parts = value.split(" ")
        if len(parts) != 5 or parts[3] not in ("0", "1") or parts[4] not in ("0", "1"):
            return None
        try:
            start = float(parts[0])
        except ValueError:
            return None
        return cls(start, urllib.parse.unquote(parts[1]), urllib.parse.unquote(parts[2]), parts[3] == "1",
                   parts[4] == "1")


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


def build(request_id: str, asked: Asked, api: str, who: Served, status: int, streamed: bool, now: float,
          first_byte: float | None, usage: Usage | None, route: str = "", registry: Registry | None = None
          ) -> UsageRecord:
    spent = cost(usage, who.model) if usage is not None and who.model is not None else 0.0
    served_id = who.model.id if who.model else ""
    known = registry is not None and known_name(registry, asked.requested)
    return UsageRecord(request_id, asked.client, api, asked.requested, served_id,
                       who.provider, who.credential, who.attempts, status, streamed, max(0.0, now - asked.start),
                       None if first_byte is None else max(0.0, first_byte - asked.start), usage, spent, route,
                       request_label=asked.requested if known else "other",
                       response_label=served_id if who.listed else "other")


@dataclass(frozen=True, slots=True)
class LoggedAnswer:
    """What Envoy's access log tells of a request it served by itself, as plain values."""

    request_id: str
    api: Api  # the client's
    start: float  # wall clock, seconds
    end: float  # the last byte to the client
    first_byte: float | None  # the first byte from the provider
    status: int
    attempt: str  # the last attempt's header (failover rewrites it)
    provider: str
    route: str  # x-extproc-route, as the client got it
    requested: str  # the body's model
    usage: Mapping[str, object]  # what Envoy read at `ANSWER_USAGE_KEYS`, by dotted path


def logged_record(answer: LoggedAnswer, registry: Registry) -> UsageRecord:
    """The record the router-level exchange would have written for this answer (no client key: a request
    with one is never served by Envoy alone)."""
    usage = usage_of_document(answer.api, document_of_keys(answer.usage))
    return build(answer.request_id, Asked(answer.start, "", answer.requested), answer.api.value,
                 served(registry, answer.attempt, answer.provider), answer.status, False, answer.end,
                 answer.first_byte, usage, answer.route, registry)
