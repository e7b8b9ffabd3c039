"""The console's pages: Overview, Models, Keys, Requests, and the JSON the Overview's charts read.

Each page is a view model built by a pure function from what the gateway holds (the registry and health, the
client keys' counters, the usage store), then rendered by its template. No view model carries a secret: client
keys appear by name, credentials by id.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from extproc.console.context import console_of
from extproc.core.availability import availability, recommended_fallbacks, usual_request
from extproc.core.budget import period
from extproc.core.catalog import ModelSpec
from extproc.core.health import HealthView
from extproc.core.registry import Registry
from extproc.usage.standing import Standing, standings
from extproc.usage.store import DIMENSIONS, Dimension, Point, Totals

# The Overview's ranges: (name, label, span in seconds, one bucket in seconds).
RANGES: dict[str, tuple[str, float, float]] = {
    "hour": ("Last hour", 3600.0, 60.0),
    "day": ("Last day", 86400.0, 3600.0),
    "month": ("Last 30 days", 30 * 86400.0, 86400.0),
}
DIMENSION_LABELS: dict[str, str] = {"model": "Model", "provider": "Provider", "client": "Client key",
                                    "credential": "Credential"}
METRICS = ("requests", "errors", "tokens", "cost")
RECENT_LIMIT = 100
FILTERS = ("client", "model", "provider", "status")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/api/series", series)
    app.router.add_get("/models", models)
    app.router.add_get("/keys", keys)
    app.router.add_get("/requests", requests)


def utc(at: float | None) -> str:
    """A moment as people read it here: UTC, to the second."""
    if at is None or math.isinf(at):
        return "restart"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -------------------------------------------------------------------------------------------------- overview

@dataclass(frozen=True, slots=True)
class Window:
    """Which buckets a range covers: whole steps, the last one holding now."""

    since: float
    until: float
    step: float

    @classmethod
    def of(cls, span: float, step: float, now: float) -> Window:
        end = (now // step + 1) * step
        return cls(end - span, now, step)

    @property
    def starts(self) -> list[float]:
        return [self.since + i * self.step for i in range(math.ceil((self.until - self.since) / self.step))]


@dataclass(frozen=True, slots=True)
class TotalRow:
    value: str
    totals: Totals

    @property
    def tokens(self) -> int:
        return self.totals.input_tokens + self.totals.output_tokens


def choice(query: Mapping[str, str], name: str, allowed: Sequence[str], default: str) -> str:
    value = query.get(name, default)
    return value if value in allowed else default


def total_rows(points: Sequence[Point]) -> list[TotalRow]:
    """Each value's totals over every bucket, the busiest first."""
    summed: dict[str, list[float]] = {}
    for p in points:
        t, into = p.totals, summed.setdefault(p.value, [0, 0, 0, 0, 0.0])
        for i, v in enumerate((t.requests, t.errors, t.input_tokens, t.output_tokens, t.cost)):
            into[i] += v
    rows = [TotalRow(value or "(none)", Totals(int(s[0]), int(s[1]), int(s[2]), int(s[3]), s[4]))
            for value, s in summed.items()]
    return sorted(rows, key=lambda r: (-r.totals.requests, r.value))


def metric(t: Totals, name: str) -> float:
    return {"requests": t.requests, "errors": t.errors, "tokens": t.input_tokens + t.output_tokens,
            "cost": t.cost}[name]


def series_doc(points: Sequence[Point], window: Window) -> dict[str, Any]:
    """The charts' data, aligned as uPlot takes it: the buckets' starts, and per value one list per metric."""
    starts = window.starts
    values = [r.value for r in total_rows(points)]
    index = {v: i for i, v in enumerate(values)}
    data = {m: [[0.0] * len(starts) for _ in values] for m in METRICS}
    for p in points:
        bucket = int((p.start - window.since) // window.step)
        if 0 <= bucket < len(starts):
            for m in METRICS:
                data[m][index[p.value or "(none)"]][bucket] += metric(p.totals, m)
    return {"x": starts, "values": values, "metrics": data}


async def overview(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    span = choice(request.query, "range", tuple(RANGES), "day")
    by = choice(request.query, "by", DIMENSIONS, "model")
    label, length, step = RANGES[span]
    rows: list[TotalRow] = []
    if console.usage is not None:  # the table sums the buckets the charts draw, so the two always agree
        window = Window.of(length, step, console.runtime.clock())
        rows = total_rows(await console.usage.series(window.since, window.until, step, _dimension(by)))
    return console.render(request, "overview.html", page="overview", ranges=RANGES, span=span, by=by,
                          dimensions=DIMENSION_LABELS, rows=rows, kept=console.usage is not None, label=label)


async def series(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    if console.usage is None:
        return web.json_response({"error": "usage is not kept"}, status=404)
    span = choice(request.query, "range", tuple(RANGES), "day")
    by = choice(request.query, "by", DIMENSIONS, "model")
    _, length, step = RANGES[span]
    window = Window.of(length, step, console.runtime.clock())
    points = await console.usage.series(window.since, window.until, step, _dimension(by))
    return web.json_response(series_doc(points, window))


def _dimension(by: str) -> Dimension:
    for d in DIMENSIONS:
        if d == by:
            return d
    return "model"


# ---------------------------------------------------------------------------------------------------- models

@dataclass(frozen=True, slots=True)
class CredentialRow:
    id: str
    state: str  # in words: available, cooling down until …, suspended …
    available: bool
    windows: tuple[str, ...] = ()  # a subscription's windows, each "5h: 42% used, resets …"


@dataclass(frozen=True, slots=True)
class ModelRow:
    id: str
    provider: str
    available: bool
    reason: str
    fallbacks: tuple[str, ...]
    credentials: tuple[CredentialRow, ...] = field(default=())


def model_rows(registry: Registry, health: HealthView, now: float) -> list[ModelRow]:
    """The registry as the Models API shows it: availability and why not, the fallbacks a request would try now,
    each credential's state."""
    rows = []
    for model in sorted(registry.models, key=lambda m: (m.provider, m.id)):
        state = availability(model, registry, health, now)
        rows.append(ModelRow(model.id, model.provider, state.available, state.reason or "",
                             tuple(m.id for m in recommended_fallbacks(model, registry, health, now)),
                             credential_rows(model, registry, health, now)))
    return rows


def credential_rows(model: ModelSpec, registry: Registry, health: HealthView, now: float) -> tuple[CredentialRow, ...]:
    endpoint = usual_request(model, registry).endpoint
    rows = []
    for cred in registry.credentials_for(model):
        block = health.blocked(cred.id, model.id, now, endpoint)
        if block is None:
            state = "available"
        elif block.kind == "cooldown":
            state = f"cooling down until {utc(block.until)}: {block.reason}"
        else:
            state = f"suspended until {utc(block.until)}: {block.reason}"
        windows = health.windows(cred.id)
        shown = () if windows is None else tuple(
            f"{w.name}: {w.utilization:.0%} used" + (f", resets {utc(w.resets_at)}" if w.resets_at else "")
            for w in windows.levels)
        rows.append(CredentialRow(cred.id, state, block is None, shown))
    return tuple(rows)


async def models(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    runtime = console.runtime
    rows = model_rows(runtime.current.registry, runtime.health, runtime.clock())
    show = choice(request.query, "show", ("all", "available", "unavailable"), "all")
    provider = request.query.get("provider", "")
    providers = sorted({r.provider for r in rows})
    shown = [r for r in rows if (show == "all" or r.available == (show == "available"))
             and (not provider or r.provider == provider)]
    return console.render(request, "models.html", page="models", rows=shown, total=len(rows), show=show,
                          provider=provider, providers=providers,
                          available=sum(1 for r in rows if r.available))


# ------------------------------------------------------------------------------------------------------ keys

@dataclass(frozen=True, slots=True)
class KeyRow:
    """A client key or a team (`kind`) by name, never the key: what it spent and used against its limits."""

    kind: str  # key | team
    name: str
    team: str | None  # a key's team; for a team, its keys
    models: str  # what it may use, in words
    rpm_used: float | None  # requests in the last minute (counted for an owner with a limit only)
    rpm: int | None
    tpm_used: float | None  # tokens (input + output) in the last minute, likewise
    tpm: int | None
    spent: float | None  # in the budget's current period
    budget: float | None
    per: str
    resets: str

    @property
    def budget_share(self) -> float:
        return 0.0 if not self.budget or self.spent is None else min(1.0, self.spent / self.budget)

    @property
    def rpm_share(self) -> float:
        return 0.0 if not self.rpm or self.rpm_used is None else min(1.0, self.rpm_used / self.rpm)

    @property
    def tpm_share(self) -> float:
        return 0.0 if not self.tpm or self.tpm_used is None else min(1.0, self.tpm_used / self.tpm)


def key_rows(found: Sequence[Standing], now: float) -> list[KeyRow]:
    """Each client key, then each team: spend against budget, requests and tokens per minute against their
    limits, the models a key may use and the team it is in (a team: its keys)."""
    members: dict[str, list[str]] = {}
    for s in found:
        if s.of.team is not None:
            members.setdefault(s.of.team, []).append(s.of.name)
    rows = []
    for s in found:
        who = s.of
        per, resets = (who.budget.per, utc(period(now, who.budget.per)[1])) if who.budget is not None else ("", "")
        team = who.team if who.kind == "key" else ", ".join(members.get(who.name, ()))
        models = (", ".join(who.models) or "any model") if who.kind == "key" else "as each key may"
        rows.append(KeyRow(who.kind, who.name, team or None, models,
                           s.requests if who.rpm is not None else None, who.rpm,
                           s.tokens if who.tpm is not None else None, who.tpm,
                           s.spent if who.budget is not None else None,
                           who.budget.usd if who.budget is not None else None, per, resets))
    return rows


async def keys(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    runtime = console.runtime
    settings = runtime.current.settings
    now = runtime.clock()
    rows = key_rows(await standings(settings.clients.keys, console.limiter, console.spend, console.tokens, now), now)
    return console.render(request, "keys.html", page="keys", rows=rows, required=settings.clients.active)


# -------------------------------------------------------------------------------------------------- requests

@dataclass(frozen=True, slots=True)
class RecordRow:
    request_id: str
    at: str  # UTC, said once in the column's heading
    client: str
    model: str  # requested → served
    provider: str
    credential: str
    status: int
    outcome: str
    tokens: str
    cost: float
    latency_ms: float


def record_rows(records: Sequence[Mapping[str, Any]]) -> list[RecordRow]:
    """The fields of each usage record the table shows (never its bodies, when the log keeps them)."""
    rows = []
    for r in records:
        requested, served = r.get("requested_model") or "", r.get("served_model") or ""
        at = r.get("at") or r.get("time")
        rows.append(RecordRow(
            str(r.get("request_id") or ""),
            utc(float(at)).removesuffix(" UTC") if isinstance(at, int | float) else str(at or ""),
            r.get("client") or "-", requested if not served or served == requested else f"{requested} → {served}",
            r.get("provider") or "-", r.get("credential") or "-", int(r.get("status") or 0),
            str(r.get("outcome") or ""), f"{int(r.get('input_tokens') or 0)} / {int(r.get('output_tokens') or 0)}",
            float(r.get("cost_usd") or 0.0), float(r.get("latency_ms") or 0.0)))
    return rows


def record_filters(query: Mapping[str, str]) -> dict[str, str]:
    return {name: query[name].strip() for name in FILTERS if query.get(name, "").strip()}


async def requests(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    filters = record_filters(request.query)
    rows: list[RecordRow] = []
    if console.usage is not None:
        rows = record_rows(await console.usage.recent(RECENT_LIMIT, filters))
    return console.render(request, "requests.html", page="requests", rows=rows, filters=filters,
                          kept=console.usage is not None, limit=RECENT_LIMIT)
