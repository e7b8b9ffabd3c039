"""Discovery against fake providers (real HTTP servers): headers, merge, TTL, timeouts, failures."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import openai
import pytest

from extproc.config import parse_settings
from extproc.core.settings import Settings
from extproc.discovery.parse import Listed
from extproc.discovery.refresh import FIRST_LIST_RETRY, Discovery
from extproc.runtime import Snapshot
from tests.clock import Clock
from tests.conftest import SECRETS, Stack, provider_config
from tests.fakes import FakeProvider, Listing
from tests.waits import HANG_GUARD, eventually


def make_settings(fakes: dict[str, FakeProvider], **raw: Any) -> Settings:
    config = {"providers": provider_config(fakes, without=("mistral",)), "discovery": {"ttl": 60, "timeout": 0.5}}
    return parse_settings({**config, **raw}, {})


def run(settings: Settings, clock: Clock, steps: Callable[[Discovery], Any]) -> list[Mapping[str, tuple[Listed, ...]]]:
    updates: list[Mapping[str, tuple[Listed, ...]]] = []

    async def go() -> None:
        async with httpx.AsyncClient() as client:
            await steps(Discovery(settings, client, updates.append, clock=clock))

    asyncio.run(go())
    return updates


def test_each_provider_is_asked_its_own_way(fakes: dict[str, FakeProvider]) -> None:
    for fake in fakes.values():
        fake.listing = Listing(ids=[f"{fake.name}-listed"])
    updates = run(make_settings(fakes), Clock(), lambda d: d.refresh_due())
    assert {name: [m.id for m in models] for name, models in updates[-1].items()} == {
        n: [f"{n}-listed"] for n in ("openai", "anthropic", "gemini", "groq")}
    openai_call, = fakes["openai"].list_requests
    assert (openai_call.path, openai_call.headers["authorization"]) == ("/v1/models", f"Bearer {SECRETS['openai']}")
    anthropic_call, = fakes["anthropic"].list_requests
    assert anthropic_call.headers["x-api-key"] == SECRETS["anthropic"]
    assert anthropic_call.headers["anthropic-version"] == "2023-06-01"
    gemini_call, = fakes["gemini"].list_requests
    assert gemini_call.path == "/v1beta/models" and gemini_call.headers["x-goog-api-key"] == SECRETS["gemini"]
    assert fakes["groq"].list_requests[0].path == "/openai/v1/models"
    assert fakes["mistral"].list_requests == []  # no credential, no call


def test_discovered_models_merge_with_the_catalog(fakes: dict[str, FakeProvider]) -> None:
    fakes["openai"].listing = Listing(ids=["gpt-6-luna", "fresh-model"])
    fakes["gemini"].listing = Listing(ids=["gemini-new-embedding"])
    settings = make_settings(fakes)
    updates = run(settings, Clock(), lambda d: d.refresh_due())
    registry = Snapshot.build(settings).with_discovered(updates[-1]).registry
    fresh, = registry.lookup("fresh-model")
    assert fresh.discovered and fresh.provider == "openai"
    luna, = registry.lookup("gpt-6-luna")
    assert not luna.discovered and luna.input_price > 0  # the catalog's metadata wins
    embed, = registry.lookup("gemini-new-embedding")
    assert embed.mode == "embedding" and embed.context_window == 1048576
    assert registry.lookup("claude-sonnet-5-5")  # catalog models a provider does not list stay


def test_ttl_caches_then_refreshes(fakes: dict[str, FakeProvider]) -> None:
    clock = Clock(1000.0)
    fakes["openai"].listing = Listing(ids=["one"])

    async def steps(d: Discovery) -> None:
        await d.refresh_due()
        clock.now += 59
        await d.refresh_due()
        assert len(fakes["openai"].list_requests) == 1
        fakes["openai"].listing = Listing(ids=["one", "two"])
        clock.now += 1
        await d.refresh_due()
        assert len(fakes["openai"].list_requests) == 2

    updates = run(make_settings(fakes), clock, steps)
    assert [m.id for m in updates[-1]["openai"]] == ["one", "two"]


def test_failures_keep_the_last_good_list_and_log_once_per_episode(
        fakes: dict[str, FakeProvider], caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(1000.0)
    fakes["openai"].listing = Listing(ids=["kept"])

    async def steps(d: Discovery) -> None:
        await d.refresh_due()
        for failure in (Listing(status=500), Listing(raw=b"{not json"), Listing(status=500)):
            fakes["openai"].listing = failure
            clock.now += 60
            await d.refresh_due()
        assert [m.id for m in d.lists()["openai"]] == ["kept"]
        fakes["openai"].listing = Listing(ids=["kept", "back"])
        clock.now += 60
        await d.refresh_due()

    with caplog.at_level(logging.INFO, logger="extproc.discovery"):
        updates = run(make_settings(fakes), clock, steps)
    failures = [r.getMessage() for r in caplog.records if "provider=openai failed" in r.getMessage()]
    assert len(failures) == 1 and "HTTP 500" in failures[0] and "keeping the last good list (1 models)" in failures[0]
    assert any("provider=openai recovered: 2 models" in r.getMessage() for r in caplog.records)
    assert [m.id for m in updates[-1]["openai"]] == ["kept", "back"]
    assert len(fakes["openai"].list_requests) == 5
    assert all(SECRETS["openai"] not in r.getMessage() for r in caplog.records)


def test_a_first_list_that_failed_is_asked_again_soon_and_later_ones_wait_their_ttl(
        fakes: dict[str, FakeProvider]) -> None:
    clock = Clock(1000.0)
    fakes["openai"].listing = Listing(status=500)

    async def steps(d: Discovery) -> None:
        await d.refresh_due()  # no list yet: a provider whose models are all in its list would have none
        clock.now += FIRST_LIST_RETRY - 1
        await d.refresh_due()
        assert len(fakes["openai"].list_requests) == 1
        fakes["openai"].listing = Listing(ids=["first"])
        clock.now += 1
        await d.refresh_due()
        assert [m.id for m in d.lists()["openai"]] == ["first"] and len(fakes["openai"].list_requests) == 2
        fakes["openai"].listing = Listing(status=500)
        clock.now += 60
        await d.refresh_due()  # fails, with a good list kept: the next try waits the TTL
        clock.now += FIRST_LIST_RETRY
        await d.refresh_due()
        assert len(fakes["openai"].list_requests) == 3

    run(make_settings(fakes), clock, steps)


def test_slow_and_malformed_providers_time_out_without_holding_up_others(
        fakes: dict[str, FakeProvider], caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    fakes["gemini"].listing = Listing(ids=["late"], hold=release)  # answers only once the refresh is over
    fakes["groq"].listing = Listing(raw=b"<html>oops</html>")
    fakes["openai"].listing = Listing(ids=["prompt"])
    guard = threading.Timer(HANG_GUARD, release.set)  # a refresh that waited for gemini would end here, and fail
    guard.start()
    try:
        with caplog.at_level(logging.INFO, logger="extproc.discovery"):
            updates = run(make_settings(fakes), Clock(), lambda d: d.refresh_due())
        assert not release.is_set(), "the refresh waited for the provider past its timeout"
    finally:
        guard.cancel()
        release.set()
    assert "gemini" not in updates[-1] and "groq" not in updates[-1]
    assert [m.id for m in updates[-1]["openai"]] == ["prompt"]
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "provider=gemini failed: timed out; using the catalog" in messages
    assert "provider=groq failed: not JSON" in messages


def test_discovery_can_be_turned_off(fakes: dict[str, FakeProvider]) -> None:
    providers = provider_config(fakes)
    providers["openai"]["discovery"] = False
    run(make_settings(fakes, providers=providers), Clock(), lambda d: d.refresh_due())
    assert fakes["openai"].list_requests == [] and fakes["groq"].list_requests
    run(make_settings(fakes, discovery=False), Clock(), lambda d: d.refresh_due())
    assert fakes["openai"].list_requests == [] and len(fakes["groq"].list_requests) == 1


def test_a_running_gateway_serves_discovered_models(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    fakes["openai"].listing = Listing(ids=["fresh-model"])
    stack = make_stack({"providers": provider_config(fakes), "discovery": {"ttl": 60}})

    def listed() -> dict[str, Any] | None:
        models = {m["id"]: m for m in httpx.get(stack.url + "/v1/models").json()["data"]}
        return models if "fresh-model" in models else None

    models = eventually(listed, "the gateway lists the discovered model")
    assert models["fresh-model"]["discovered"] is True and models["fresh-model"]["available"] is True
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)
    chat = [{"role": "user", "content": "hi"}]
    raw = oa.chat.completions.with_raw_response.create(model="fresh-model", messages=chat)  # type: ignore[arg-type]
    assert raw.headers["x-extproc-route"] == "direct" and raw.headers["x-extproc-provider"] == "openai"
