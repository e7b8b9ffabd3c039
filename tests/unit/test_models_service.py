"""The Models service over a runtime: listing, availability reasons, detail with fallbacks, 404."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from extproc.control.models import ModelsService
from extproc.discovery.parse import Listed
from extproc.runtime import Runtime
from extproc.v1 import models_pb2 as pb
from tests.clock import Clock
from tests.unit.helpers import model, provider, settings

T = 1_700_000_000.0


class Aborted(Exception):
    pass


class Context:
    """Just enough of grpc.aio.ServicerContext: abort raises, as the real one does."""

    code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


@pytest.fixture
def runtime(clock: Clock) -> Runtime:
    s = settings(
        # Custom providers only: built-in ones have no key here, so catalog models never appear as fallbacks.
        providers={"acme": provider({"openai": "/v1"}, "sk-a"), "zeta": provider({"openai": "/v1"}, "sk-z"),
                   "nokey": provider({"openai": "/v1"})},
        models=[model("svc-a", "acme", price=1.0), model("svc-b", "acme", price=1.2),
                model("svc-c", "zeta", price=0.9), model("svc-m", "nokey", price=1.0),
                model("svc-old", "acme", price=1.1, status="deprecated")],
        aliases={"fast": "svc-c"},
        strategy="capability-match",
    )
    return Runtime(s, clock=clock)


def call(coro: Any) -> Any:
    return asyncio.run(coro)


def listed(runtime: Runtime, available: bool = False) -> dict[str, pb.Model]:
    service = ModelsService(runtime)
    method = service.ListAvailableModels if available else service.ListModels
    result = call(method(pb.ListModelsRequest(), Context()))
    assert result.object == "list"
    return {m.id: m for m in result.data}


def test_list_has_every_model_with_openai_and_rich_fields(runtime: Runtime) -> None:
    models = listed(runtime)
    assert len(models) == len(runtime.current.registry.models)
    a = models["svc-a"]
    assert (a.object, a.owned_by, a.provider, a.available, a.credentials) == ("model", "acme", "acme", True, 1)
    assert a.created > 0 and a.context_window == 100_000 and a.input_price_per_million == 1.0
    assert not a.HasField("unavailable_reason")
    m = models["svc-m"]
    assert (m.available, m.unavailable_reason, m.credentials) == (False, "no credential", 0)


def test_available_lists_only_what_a_request_could_use_now(runtime: Runtime, clock: Clock) -> None:
    runtime.health.observe("acme:key1", "svc-a", 429, 30, clock.now)
    available = listed(runtime, available=True)
    assert "svc-a" not in available and "svc-m" not in available and "svc-b" in available
    reason = listed(runtime)["svc-a"].unavailable_reason
    assert reason.startswith("cooling down until 2023-11-14T22:13:50Z") and "429" in reason
    clock.now += 30
    assert "svc-a" in listed(runtime, available=True)


def test_suspension_reason(runtime: Runtime, clock: Clock) -> None:
    runtime.health.observe("acme:key1", "svc-a", 401, None, clock.now)
    assert listed(runtime)["svc-b"].unavailable_reason == "suspended: credential rejected (401)"


def test_detail_lists_fallbacks_in_resolution_order_available_only(runtime: Runtime, clock: Clock) -> None:
    service = ModelsService(runtime)
    detail = call(service.GetModel(pb.GetModelRequest(id="svc-a"), Context()))
    # capability-match: same provider first (svc-b), then nearest price (svc-c); not deprecated, not keyless.
    assert list(detail.fallbacks) == ["svc-b", "svc-c"]
    runtime.health.observe("acme:key1", "svc-b", 429, 60, clock.now)
    detail = call(service.GetModel(pb.GetModelRequest(id="acme/svc-a"), Context()))
    assert list(detail.fallbacks) == ["svc-c"]


def test_detail_by_alias_and_unknown_is_not_found(runtime: Runtime) -> None:
    service = ModelsService(runtime)
    assert call(service.GetModel(pb.GetModelRequest(id="fast"), Context())).id == "svc-c"
    context = Context()
    with pytest.raises(Aborted, match="'nope' does not exist"):
        call(service.GetModel(pb.GetModelRequest(id="nope"), context))
    assert context.code is grpc.StatusCode.NOT_FOUND


def test_discovered_models_are_listed_and_marked(runtime: Runtime) -> None:
    runtime.publish_discovered({"zeta": (Listed("svc-c"), Listed("brand-new", context_window=8192))})
    models = listed(runtime)
    assert models["brand-new"].discovered and models["brand-new"].context_window == 8192
    assert not models["svc-c"].discovered and models["svc-c"].input_price_per_million == 0.9


class KeyedContext(Context):
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def readiness(runtime: Runtime, context: Context) -> dict[str, Any]:
    answer = call(ModelsService(runtime).GetReadiness(pb.ReadinessRequest(), context))
    assert answer.content_type == "application/json"
    doc: dict[str, Any] = json.loads(answer.data)
    return doc


def test_readiness_without_a_key_says_ready_and_that_the_detail_is_redacted(clock: Clock) -> None:
    providers = {"acme": provider({"openai": "/v1"}, "sk-a"), "nokey": provider({"openai": "/v1"})}
    keyed = Runtime(settings(providers=providers, models=[model("svc-a", "acme"), model("svc-m", "nokey")],
                             clients={"keys": [{"name": "team", "key": "team-key-0123456789"}]}), clock=clock)
    for refused in (KeyedContext(), KeyedContext((("authorization", "Bearer wrong-key-0123456789"),))):
        assert readiness(keyed, refused) == {"status": "ready", "detail": "redacted: send a client key"}
    detail = readiness(keyed, KeyedContext((("authorization", "Bearer team-key-0123456789"),)))
    assert detail["status"] == "ready" and "detail" not in detail
    assert "nokey" in detail["providers_without_credential"] and "acme" not in detail["providers_without_credential"]
    assert detail["models"] == len(keyed.current.registry.models) and 1 <= detail["available_models"] < detail["models"]
    assert detail["shared_state"].startswith("local")


def test_readiness_without_client_keys_is_whole(runtime: Runtime) -> None:
    detail = readiness(runtime, KeyedContext())
    assert detail["models"] == len(runtime.current.registry.models) and "detail" not in detail
