"""What the Models API shows: whether a model can be served now, and what it would fall back to. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from extproc.core.catalog import ModelSpec
from extproc.core.health import HealthView
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.core.resolve import fallback_candidates
from extproc.core.view import RequestView


@dataclass(frozen=True, slots=True)
class Availability:
    available: bool
    credentials: int  # how many credentials could serve the model
    reason: str | None  # why not, when unavailable
    until: float | None = None  # soonest recovery, when known


def availability(model: ModelSpec, registry: Registry, health: HealthView, now: float) -> Availability:
    """A model is available while at least one credential that can serve it is neither cooling nor suspended
    (for its usual endpoint: chat, embeddings, messages or Gemini's)."""
    creds = registry.credentials_for(model)
    if not creds:
        return Availability(False, 0, "no credential")
    endpoint = usual_request(model, registry).endpoint
    blocks = []
    for cred in creds:
        block = health.blocked(cred.id, model.id, now, endpoint)
        if block is None:
            return Availability(True, len(creds), None)
        blocks.append(block)
    soonest = min(blocks, key=lambda b: b.until)
    if soonest.kind == "cooldown":
        when = dt.datetime.fromtimestamp(soonest.until, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Availability(False, len(creds), f"cooling down until {when}: {soonest.reason}", soonest.until)
    return Availability(False, len(creds), f"suspended: {soonest.reason}", soonest.until)


def usual_request(model: ModelSpec, registry: Registry) -> RequestView:
    """A plain request for the model through its provider's usual API (OpenAI's when it speaks it)."""
    provider = registry.providers[model.provider]
    api = Api.OPENAI if Api.OPENAI in provider.apis else next(iter(provider.apis))
    endpoint = {Api.OPENAI: "embeddings" if model.mode == "embedding" else "chat",
                Api.ANTHROPIC: "messages", Api.GEMINI: "gemini"}[api]
    return RequestView(api, model.qualified, model.mode, endpoint=endpoint)


def recommended_fallbacks(model: ModelSpec, registry: Registry, health: HealthView, now: float,
                          limit: int = 5) -> list[ModelSpec]:
    """What a plain request for `model` would fall back to now, in order, available ones only."""
    req = usual_request(model, registry)
    picked: list[ModelSpec] = []
    for _, candidate in fallback_candidates(req, model, registry):
        if candidate in picked or candidate == model:
            continue
        if availability(candidate, registry, health, now).available:
            picked.append(candidate)
            if len(picked) == limit:
                break
    return picked
