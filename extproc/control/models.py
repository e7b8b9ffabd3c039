"""The Models service: the registry as each SDK's models API (OpenAI's typed, Anthropic's and Gemini's as the
JSON `model_lists` builds). Each call reads one snapshot."""

from __future__ import annotations

import math

import grpc
import orjson
from google.api import httpbody_pb2

from extproc.control.model_lists import anthropic_model, anthropic_page, gemini_model, gemini_page, native, reachable
from extproc.control.windows import rfc3339, window_messages
from extproc.core.availability import availability, recommended_fallbacks, usual_request
from extproc.core.catalog import ModelSpec
from extproc.core.clients import identify
from extproc.core.errors import ClientError
from extproc.core.health import HealthView
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.core.settings import Credential
from extproc.runtime import Runtime
from extproc.v1 import models_pb2 as pb
from extproc.v1 import models_pb2_grpc as pb_grpc

REDACTED = "redacted: send a client key"  # /readyz's detail to a caller without one


class ModelsService(pb_grpc.ModelsServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def ListModels(self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext) -> pb.ModelList:  # noqa: N802
        await self._client(context)
        return self._list(only_available=False)

    async def ListAvailableModels(  # noqa: N802
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelList:
        await self._client(context)
        return self._list(only_available=True)

    async def _client(self, context: grpc.aio.ServicerContext, query_key: str = "") -> None:
        """The models API follows the request path's rule: a client key when keys are configured or required."""
        if not self._holds_key(context, query_key):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "This gateway needs a client key: send it as "
                                                                 "your SDK's API key.")

    def _holds_key(self, context: grpc.aio.ServicerContext, query_key: str = "") -> bool:
        policy = self._runtime.current.settings.clients
        if not policy.active:
            return True
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        if query_key and not any(k in metadata for k in ("authorization", "x-api-key", "x-goog-api-key")):
            metadata["x-goog-api-key"] = query_key  # Gemini's ?key=
        try:
            identify(policy, metadata)
        except ClientError:
            return False
        return True

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.Model:  # noqa: N802
        await self._client(context)
        registry = self._runtime.current.registry
        found = await _found(context, find_model(registry, request.id), f"The model '{request.id}' does not exist "
                             "on this gateway; GET /v1/models lists the models.")
        return _card(found, registry, self._runtime.health, self._runtime.clock(), with_fallbacks=True)

    async def ListAnthropicModels(self, request: pb.AnthropicListRequest,  # noqa: N802
                                  context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        await self._client(context)
        models = reachable(self._runtime.current.registry, Api.ANTHROPIC, "messages")
        return _json(anthropic_page(models, request.limit, request.after_id, request.before_id))

    async def GetAnthropicModel(self, request: pb.GetModelRequest,  # noqa: N802
                                context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        await self._client(context)
        found = await _found(context, find_model(self._runtime.current.registry, request.id), f"model: {request.id}")
        return _json(anthropic_model(found))

    async def ListGeminiModels(self, request: pb.GeminiListRequest,  # noqa: N802
                               context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        await self._client(context, request.key)
        registry = self._runtime.current.registry
        models = reachable(registry, Api.GEMINI, "gemini")
        return _json(gemini_page(models, request.page_size, request.page_token,
                                 native(registry, Api.GEMINI, "gemini", models)))

    async def GetGeminiModel(self, request: pb.GetGeminiModelRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        await self._client(context, request.key)
        name = request.id.removeprefix("models/")
        registry = self._runtime.current.registry
        found = await _found(context, find_model(registry, name),
                             f"models/{name} is not found for API version v1beta, or is not supported for "
                             "generateContent.")
        return _json(gemini_model(found, bool(native(registry, Api.GEMINI, "gemini", [found]))))

    async def GetReadiness(self, request: pb.ReadinessRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        """Ready or not is for anyone; what the gateway lacks, for key holders only. JSON of our own, not a typed
        message: the transcoder prints every field of one, and a redacted answer must not read as zero models."""
        if not self._holds_key(context):
            return _json({"status": "ready", "detail": REDACTED})
        registry, health, now = self._runtime.current.registry, self._runtime.health, self._runtime.clock()
        suspended = self._runtime.health.suspended_ids(now)
        usable = {p for p, creds in registry.credentials.items() if any(c.id not in suspended for c in creds)}
        lacking = sorted(p for p in registry.providers if p not in usable)
        cards = [availability(m, registry, health, now) for m in registry.models]
        return _json({"status": "ready", "providers_without_credential": lacking, "models": len(cards),
                      "available_models": sum(1 for c in cards if c.available),
                      "shared_state": self._runtime.shared_state()})

    def _list(self, only_available: bool) -> pb.ModelList:
        registry, health, now = self._runtime.current.registry, self._runtime.health, self._runtime.clock()
        cards = [_card(m, registry, health, now) for m in registry.models]
        return pb.ModelList(object="list", data=[c for c in cards if c.available or not only_available])


def find_model(registry: Registry, name: str) -> ModelSpec | None:
    """A model by id, provider/id or alias; else one a provider's model prefixes claim (a request for it would
    pass through to that provider as asked)."""
    found = registry.lookup(name) or registry.lookup(registry.aliases.get(name, ""))
    if found:
        return found[0]
    owners = [p.name for p in registry.providers.values() if p.model_prefixes and name.startswith(p.model_prefixes)]
    return ModelSpec(id=name, provider=owners[0]) if len(owners) == 1 else None


async def _found(context: grpc.aio.ServicerContext, model: ModelSpec | None, message: str) -> ModelSpec:
    if model is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, message)
        raise AssertionError("unreachable: abort raises")
    return model


def _json(doc: object) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(doc))


def _card(model: ModelSpec, registry: Registry, health: HealthView, now: float,
          with_fallbacks: bool = False) -> pb.Model:
    state = availability(model, registry, health, now)
    card = pb.Model(
        id=model.id, object="model", created=model.created_ts, owned_by=model.provider,
        provider=model.provider, mode=model.mode, context_window=model.context_window,
        max_output_tokens=model.max_output_tokens, input_price_per_million=model.input_price,
        output_price_per_million=model.output_price, capabilities=sorted(model.capabilities),
        status=model.status, available=state.available, credentials=state.credentials,
        discovered=model.discovered,
    )
    if state.reason is not None:
        card.unavailable_reason = state.reason
    if with_fallbacks:
        card.fallbacks.extend(m.id for m in recommended_fallbacks(model, registry, health, now))
        card.credential_states.extend(_credential_state(c, model, registry, health, now)
                                      for c in registry.credentials_for(model))
    return card


def _credential_state(cred: Credential, model: ModelSpec, registry: Registry, health: HealthView,
                      now: float) -> pb.CredentialState:
    block = health.blocked(cred.id, model.id, now, usual_request(model, registry).endpoint)
    state = pb.CredentialState(id=cred.id, available=block is None)
    if block is not None:
        until = rfc3339(block.until) if block.until < math.inf else "restart"
        state.unavailable_reason = f"{block.kind} until {until}: {block.reason}"
    windows = health.windows(cred.id)
    if windows is not None:
        state.windows.extend(window_messages(windows))
        state.exhausted = windows.exhausted
    return state
