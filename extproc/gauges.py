"""Gauges of what is true now: each credential's availability and the end of its block, each login's windows,
each client key's budget left and requests this minute.

They are worked out when `/metrics` is scraped, never set as events happen: a cooldown ends, a minute passes and
a budget's period turns over without any event to set a gauge by. The process that serves `/metrics` (the
supervisor, with several workers) holds none of this state, so it asks a worker for them (`GET /extproc/gauges`
on the worker's relay port, with the processor token), the first that answers. Every worker reads the same shared
state (health, spend and rate counts in `state.redis`, which several workers require), so any one of them gives
the same figures. Label values come from the config and the registry only (credential ids, listed models, key
names), never from a client.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import httpx
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from extproc.addresses import local_url
from extproc.core.budget import period
from extproc.core.headers import PROCESSOR_TOKEN_HEADER
from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.settings import Address
from extproc.runtime import Runtime
from extproc.state.rate_limit import RateLimiter
from extproc.state.spend import SpendLedger
from extproc.state.tokens import TokenCounter
from extproc.usage.standing import Standing, standings

log = logging.getLogger("extproc")
PATH = "/extproc/gauges"
EVERY_MODEL = "*"  # the model label of a credential's row for all its models


@dataclass(frozen=True, slots=True)
class GaugeSpec:
    name: str
    help: str
    labels: tuple[str, ...]


_CREDENTIAL = ("provider", "credential", "model")
_OWNER = ("owner", "name")  # owner: "key" (a client key) or "team" (`clients.teams`)
AVAILABLE = GaugeSpec("extproc_credential_available", "1 when the credential can serve now, 0 when it is blocked; "
                      "model \"*\": all its models, else a listed model health blocks on it.", _CREDENTIAL)
COOLDOWN_UNTIL = GaugeSpec("extproc_credential_cooldown_until_seconds", "When the credential's cooldown ends (unix "
                           "seconds; 0: none), for all its models (an exhausted window) or one model.", _CREDENTIAL)
SUSPENDED_UNTIL = GaugeSpec("extproc_credential_suspended_until_seconds", "When the credential's suspension ends "
                            "(unix seconds; 0: none; +Inf: until a new login or a restart).", _CREDENTIAL)
WINDOW_USED = GaugeSpec("extproc_subscription_window_used_ratio", "How full each login's subscription windows are "
                        "(0-1; above 1: over its limit), as last recorded, by credential id and window.",
                        ("credential", "window"))
WINDOW_RESETS = GaugeSpec("extproc_subscription_window_resets_at_seconds", "When each login's subscription window "
                          "resets (unix seconds; 0: not said).", ("credential", "window"))
BUDGET = GaugeSpec("extproc_budget_usd", "The budget (USD) of each client key and team per period.", _OWNER)
BUDGET_LEFT = GaugeSpec("extproc_budget_remaining_usd", "What is left of the budget (USD) in its current period.",
                        _OWNER)
BUDGET_RESETS = GaugeSpec("extproc_budget_resets_at_seconds", "When the budget's period ends (unix seconds).", _OWNER)
RPM_LIMIT = GaugeSpec("extproc_requests_per_minute_limit", "Each client key's and team's requests per minute (rpm).",
                      _OWNER)
RPM_USED = GaugeSpec("extproc_requests_per_minute_used", "Requests counted against rpm in the minute that ends now.",
                     _OWNER)
TPM_LIMIT = GaugeSpec("extproc_tokens_per_minute_limit", "Each client key's and team's tokens per minute (tpm).",
                      _OWNER)
TPM_USED = GaugeSpec("extproc_tokens_per_minute_used", "Tokens (input + output) counted against tpm in the minute "
                     "that ends now.", _OWNER)
SPECS = (AVAILABLE, COOLDOWN_UNTIL, SUSPENDED_UNTIL, WINDOW_USED, WINDOW_RESETS, BUDGET, BUDGET_LEFT, BUDGET_RESETS,
         RPM_LIMIT, RPM_USED, TPM_LIMIT, TPM_USED)

Rows = dict[GaugeSpec, list[tuple[tuple[str, ...], float]]]


def credential_rows(registry: Registry, health: Health, now: float) -> Rows:
    """Each credential's row for all its models, and a row per listed model that health blocks on it now."""
    provider_of = {c.id: c.provider for creds in registry.credentials.values() for c in creds}
    ends: dict[tuple[str, str], dict[str, float]] = {(c, EVERY_MODEL): {} for c in provider_of}
    for cred, model, block in health.blocks(now):
        if cred not in provider_of or (model and not registry.lookup(model)):
            continue  # a removed credential, or a model a client made up: no label of its own
        kinds = ends.setdefault((cred, model or EVERY_MODEL), {})
        kinds[block.kind] = max(kinds.get(block.kind, 0.0), block.until)
    rows: Rows = {AVAILABLE: [], COOLDOWN_UNTIL: [], SUSPENDED_UNTIL: []}
    for (cred, model), kinds in sorted(ends.items()):
        labels = (provider_of[cred], cred, model)
        rows[AVAILABLE].append((labels, 0.0 if kinds else 1.0))
        rows[COOLDOWN_UNTIL].append((labels, kinds.get("cooldown", 0.0)))
        rows[SUSPENDED_UNTIL].append((labels, kinds.get("suspended", 0.0)))
    return rows


def window_rows(registry: Registry, health: Health) -> Rows:
    """Each login's windows as last recorded (within 5 points of its latest answer)."""
    known = {c.id for creds in registry.credentials.values() for c in creds}
    rows: Rows = {WINDOW_USED: [], WINDOW_RESETS: []}
    for cred, state in sorted(health.all_windows().items()):
        if cred not in known:
            continue
        for level in state.levels:
            rows[WINDOW_USED].append(((cred, level.name), level.utilization))
            rows[WINDOW_RESETS].append(((cred, level.name), level.resets_at or 0.0))
    return rows


def key_rows(found: Sequence[Standing], now: float) -> Rows:
    """Each client key's and team's budget left, and its rpm and tpm used."""
    rows: Rows = {BUDGET: [], BUDGET_LEFT: [], BUDGET_RESETS: [], RPM_LIMIT: [], RPM_USED: [], TPM_LIMIT: [],
                  TPM_USED: []}
    for standing in found:
        who, labels = standing.of, (standing.of.kind, standing.of.name)
        if who.budget is not None:
            rows[BUDGET].append((labels, who.budget.usd))
            rows[BUDGET_LEFT].append((labels, max(0.0, who.budget.usd - standing.spent)))
            rows[BUDGET_RESETS].append((labels, period(now, who.budget.per)[1]))
        if who.rpm is not None:
            rows[RPM_LIMIT].append((labels, float(who.rpm)))
            rows[RPM_USED].append((labels, standing.requests))
        if who.tpm is not None:
            rows[TPM_LIMIT].append((labels, float(who.tpm)))
            rows[TPM_USED].append((labels, standing.tokens))
    return rows


def families(rows: Rows) -> list[Metric]:
    found: list[Metric] = []
    for spec in SPECS:
        family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        for labels, value in rows.get(spec, ()):
            family.add_metric(labels, value)
        found.append(family)
    return found


async def read(runtime: Runtime, limiter: RateLimiter, spend: SpendLedger, tokens: TokenCounter) -> list[Metric]:
    """Every gauge now: health and the registry from this process, spend and rate counts from their ledgers."""
    snapshot, now = runtime.current, runtime.clock()
    owners = await standings(snapshot.settings.clients.keys, limiter, spend, tokens, now)
    rows = {**credential_rows(snapshot.registry, runtime.health, now), **window_rows(snapshot.registry, runtime.health),
            **key_rows(owners, now)}
    return families(rows)


class _Fixed(Collector):
    def __init__(self, found: Iterable[Metric]) -> None:
        self._found = list(found)

    def collect(self) -> Iterable[Metric]:
        return self._found


def exposition(found: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(found))
    return generate_latest(registry)


def routes(runtime: Runtime, limiter: RateLimiter, spend: SpendLedger, tokens: TokenCounter,
           token: str | None) -> list[web.RouteDef]:
    """The worker's side: `GET /extproc/gauges` on the relay port, for the process that serves /metrics."""
    expected = token.encode() if token is not None else None

    async def gauges(request: web.Request) -> web.Response:
        presented = request.headers.get(PROCESSOR_TOKEN_HEADER, "").encode()
        if expected is not None and not hmac.compare_digest(presented, expected):
            return web.Response(status=403, text="forbidden")
        return web.Response(body=exposition(await read(runtime, limiter, spend, tokens)),
                            content_type="text/plain", charset="utf-8")

    return [web.get(PATH, gauges)]


class WorkerGauges(Collector):
    """The /metrics side: the gauges as the first worker that answers tells them (tried in order, each briefly)."""

    def __init__(self, relays: Sequence[Address], token: str | None, timeout: float = 2.0) -> None:
        self._urls = [f"{local_url(a)}{PATH}" for a in relays]
        self._headers = {PROCESSOR_TOKEN_HEADER: token} if token else {}
        self._timeout = timeout
        self._missing = False  # said once until a worker answers again

    def collect(self) -> Iterator[Metric]:
        text = self._fetch()
        if text is not None:
            yield from text_string_to_metric_families(text)

    def _fetch(self) -> str | None:
        for url in self._urls:
            try:
                answer = httpx.get(url, headers=self._headers, timeout=self._timeout)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                self._missing = False
                return answer.text
        if not self._missing:
            log.warning("metrics: no processor worker told its gauges (credentials, windows, budgets); they are "
                        "left out until one does")
            self._missing = True
        return None
