"""The console's view models: what each page shows, built from the gateway's state with no I/O."""

from __future__ import annotations

import asyncio
import math

from extproc.console.pages import (
    KeyRow,
    Window,
    key_rows,
    model_rows,
    record_filters,
    record_rows,
    series_doc,
    total_rows,
)
from extproc.core.budget import Budget, period
from extproc.core.clients import ClientKey, Team, token_counter
from extproc.runtime import Runtime
from extproc.state.rate_limit import LocalRateLimiter
from extproc.state.spend import LocalSpend
from extproc.state.tokens import LocalTokens
from extproc.usage.record import UsageRecord
from extproc.usage.standing import standings
from extproc.usage.store import Point, Totals
from extproc.usage.tokens import Usage
from tests.clock import Clock
from tests.unit.helpers import model, provider, settings

T = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def test_a_range_is_whole_buckets_the_last_holding_now() -> None:
    window = Window.of(3600, 60, T)
    assert window.until == T and window.step == 60
    assert len(window.starts) == 60 and window.starts[-1] <= T < window.starts[-1] + 60
    assert window.starts[0] % 60 == 0


def test_the_charts_series_align_every_value_on_the_same_buckets_and_the_table_sums_them() -> None:
    window = Window.of(3600, 60, T)
    first, last = window.starts[0], window.starts[-1]
    points = [Point(first, "gpt", Totals(2, 1, 10, 20, 0.5)), Point(last, "gpt", Totals(1, 0, 5, 5, 0.25)),
              Point(last, "claude", Totals(5, 0, 1, 1, 0.0)), Point(first - 60, "old", Totals(9, 9, 9, 9, 9.0))]
    doc = series_doc(points, window)
    assert doc["x"] == window.starts
    assert doc["values"] == ["old", "claude", "gpt"]  # the busiest first
    gpt = doc["values"].index("gpt")
    assert doc["metrics"]["requests"][gpt][0] == 2 and doc["metrics"]["requests"][gpt][-1] == 1
    assert doc["metrics"]["tokens"][gpt][0] == 30 and doc["metrics"]["cost"][gpt][-1] == 0.25
    assert sum(doc["metrics"]["requests"][doc["values"].index("old")]) == 0  # before the range: not drawn
    rows = total_rows(points[:3])
    assert [(r.value, r.totals.requests, r.totals.errors, r.tokens) for r in rows] == [
        ("claude", 5, 0, 2), ("gpt", 3, 1, 40)]
    assert math.isclose(rows[1].totals.cost, 0.75)
    assert total_rows([Point(first, "", Totals(1))])[0].value == "(none)"


def test_models_show_availability_the_fallbacks_and_each_credentials_state_in_words() -> None:
    clock = Clock(T)
    runtime = Runtime(settings(
        providers={"acme": provider({"openai": "/v1"}, "sk-acme-0123456789", "sk-acme-9876543210"),
                   "zeta": provider({"openai": "/v1"}, "sk-zeta-0123456789"), "nokey": provider({"openai": "/v1"})},
        models=[model("svc-a", "acme"), model("svc-c", "zeta"), model("svc-m", "nokey")],
        fallbacks={"svc-a": ["svc-c"]}), clock=clock)
    registry, health = runtime.current.registry, runtime.health
    first, second = (c.id for c in registry.credentials["acme"])
    health.observe(first, "svc-a", 429, 30.0, T)
    health.suspend(second, "refused its key")
    rows = {r.id: r for r in model_rows(registry, health, T) if r.provider in ("acme", "zeta", "nokey")}
    a = rows["svc-a"]
    assert not a.available and a.reason.startswith("cooling down until 2023-11-14T22:13:50Z: rate limited (429)")
    assert a.fallbacks == ("svc-c",)
    states = {c.id: c.state for c in a.credentials}
    assert states[first].startswith("cooling down until 2023-11-14 22:13:50 UTC")
    assert states[second] == "suspended until restart: refused its key"
    assert rows["svc-c"].available and rows["svc-c"].credentials[0].state == "available"
    assert rows["svc-m"].reason == "no credential" and rows["svc-m"].credentials == ()
    shown = repr(rows)
    assert "sk-acme" not in shown and "sk-zeta" not in shown


def test_keys_and_teams_show_spend_against_budget_requests_and_tokens_against_limits_never_the_key() -> None:
    clock = Clock(T)
    limiter, spend, tokens = LocalRateLimiter(clock), LocalSpend(), LocalTokens()
    payers = Team("payers", budget=Budget(50.0, "week"), tpm=1000)
    team = ClientKey("team", sha256=b"\x01" * 32, rpm=10, budget=Budget(5.0, "month"), key="team-key-0123456789")
    free = ClientKey("free", models=("claude-*",), key="free-key-0123456789")
    a = ClientKey("a", tpm=300, team=payers, key="a-key-0123456789")
    b = ClientKey("b", team=payers, key="b-key-0123456789")

    async def run() -> list[KeyRow]:
        for _ in range(3):
            assert await limiter.admit("team", 10) is None
        await spend.add("team", period(T, "month")[0], 1.25, 3600)
        await spend.add(payers.counter, period(T, "week")[0], 12.5, 3600)
        await tokens.add([token_counter("a"), token_counter(payers.counter)], 120, T)
        return key_rows(await standings([team, free, a, b], limiter, spend, tokens, T), T)

    rows = asyncio.run(run())
    t, f, ka, kb, p = rows
    assert (t.kind, t.name, t.rpm_used, t.rpm, t.spent, t.budget, t.per) == ("key", "team", 3, 10, 1.25, 5.0, "month")
    assert t.resets == "2023-12-01 00:00:00 UTC" and t.budget_share == 0.25 and t.rpm_share == 0.3
    assert t.models == "any model" and t.team is None and t.tpm is None
    assert (f.rpm_used, f.rpm, f.spent, f.budget, f.models) == (None, None, None, None, "claude-*")
    assert (ka.team, ka.tpm, kb.team, kb.tpm) == ("payers", 300, "payers", None)
    assert ka.tpm_used is not None and ka.tpm_share == ka.tpm_used / 300 > 0
    assert (p.kind, p.name, p.team, p.budget, p.spent, p.per, p.tpm) == ("team", "payers", "a, b", 50.0, 12.5,
                                                                         "week", 1000)
    assert p.tpm_used == ka.tpm_used and p.budget_share == 0.25
    assert "team-key" not in repr(rows) and "free-key" not in repr(rows) and "\\x01" not in repr(rows)


def test_a_minute_later_the_rpm_count_slides() -> None:
    clock = Clock(T - T % 60)
    limiter = LocalRateLimiter(clock)
    for _ in range(4):
        asyncio.run(limiter.admit("k", 100))
    clock.now += 90  # half of the previous minute still counts
    assert asyncio.run(limiter.used("k")) == 2
    assert asyncio.run(limiter.used("other")) == 0


def test_request_rows_show_the_record_not_its_bodies() -> None:
    rec = UsageRecord("rid-1", "team", "openai", "fast", "gpt-5-mini", "openai", "openai:key1", 2, 200, False,
                      0.1234, None, Usage(10, 3), 0.0001, "alias", bodies=(("prompt", "the secret prompt"),))
    (row,) = record_rows([{**rec.doc(), "at": T}])
    assert (row.request_id, row.model, row.client, row.credential, row.status, row.outcome, row.tokens) == (
        "rid-1", "fast → gpt-5-mini", "team", "openai:key1", 200, "served", "10 / 3")
    assert row.at == "2023-11-14 22:13:20" and row.latency_ms == 123.4  # UTC, as the column's heading says
    assert "secret prompt" not in repr(row)
    (bare,) = record_rows([{"request_id": "rid-2", "requested_model": "x", "status": 401}])
    assert (bare.model, bare.client, bare.provider, bare.at) == ("x", "-", "-", "")
    assert record_filters({"client": " team ", "model": "", "other": "x", "status": "429"}) == {
        "client": "team", "status": "429"}
