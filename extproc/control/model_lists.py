"""The registry as Anthropic's and Gemini's models lists, so each SDK's `models.list()` reads its own shape.
Pure: models in, JSON documents out (OpenAI's shape is the Models service's typed messages).

Each lists the models a client of its API could be served (by a provider that speaks it, or translated where
translation is on), newest first for Anthropic as its API
orders them, with the pagination each API defines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from extproc.core.catalog import ModelSpec
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.core.resolve import serves_api

ANTHROPIC_LIMIT, GEMINI_PAGE = (20, 1000), (50, 1000)  # (default, most) per page


def reachable(registry: Registry, api: Api, endpoint: str) -> list[ModelSpec]:
    """The models a client of this API can use, chat and embedding alike: the same test resolution makes, so
    the list holds what a request would be served (another API's chat model, translated) and nothing else."""
    return [m for m in registry.models if m.provider in registry.providers
            and serves_api(m, registry, api, endpoint)]


def _display_name(model: ModelSpec) -> str:
    """claude-haiku-5-5 → Claude Haiku 5.5: words capitalised, a run of numbers joined as a version."""
    words: list[str] = []
    for part in model.id.split("/")[-1].split("-"):
        if part.isdigit() and words and words[-1].replace(".", "").isdigit():
            words[-1] += f".{part}"
        else:
            words.append(part.upper() if part in ("gpt", "oss") else part.capitalize() if part.isalpha() else part)
    return " ".join(words)


def _created_at(model: ModelSpec) -> str:
    day = model.created or dt.date(1970, 1, 1)
    return f"{day.isoformat()}T00:00:00Z"


def anthropic_model(model: ModelSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "model", "id": model.id, "display_name": _display_name(model),
                           "created_at": _created_at(model)}
    if model.context_window:
        doc["max_input_tokens"] = model.context_window
    if model.max_output_tokens:
        doc["max_tokens"] = model.max_output_tokens
    return doc


def anthropic_page(models: Sequence[ModelSpec], limit: int, after_id: str, before_id: str) -> dict[str, Any]:
    """Anthropic's list: newest first; `after_id` pages forward, `before_id` back."""
    ordered = sorted(models, key=lambda m: (m.created or dt.date.min, m.id), reverse=True)
    ids = [m.id for m in ordered]
    size = min(max(limit or ANTHROPIC_LIMIT[0], 1), ANTHROPIC_LIMIT[1])
    if after_id in ids:
        start = ids.index(after_id) + 1
        chosen, more = ordered[start:start + size], start + size < len(ordered)
    elif before_id in ids:
        end = ids.index(before_id)
        chosen, more = ordered[max(0, end - size):end], end - size > 0
    else:
        chosen, more = ordered[:size], size < len(ordered)
    data = [anthropic_model(m) for m in chosen]
    return {"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def native(registry: Registry, api: Api, endpoint: str, models: Sequence[ModelSpec]) -> frozenset[str]:
    """Of `models`, those served in this API itself (provider/id): token counting is never translated."""
    return frozenset(m.qualified for m in models if serves_api(m, registry, api, endpoint, translated=False))


def gemini_model(model: ModelSpec, counts_tokens: bool = True) -> dict[str, Any]:
    """`counts_tokens`: countTokens is offered only for a model served in Gemini's API (never translated)."""
    methods = ["embedContent", "batchEmbedContents"] if model.mode == "embedding" else \
        ["generateContent", "streamGenerateContent", *(["countTokens"] if counts_tokens else [])]
    doc: dict[str, Any] = {"name": f"models/{model.id}", "baseModelId": model.id, "version": "001",
                           "displayName": _display_name(model), "description": f"{model.id} ({model.provider})",
                           "supportedGenerationMethods": methods}
    if model.context_window:
        doc["inputTokenLimit"] = model.context_window
    if model.max_output_tokens:
        doc["outputTokenLimit"] = model.max_output_tokens
    if "reasoning" in model.capabilities:
        doc["thinking"] = True
    return doc


def gemini_page(models: Sequence[ModelSpec], page_size: int, page_token: str,
                own: frozenset[str] | None = None) -> dict[str, Any]:
    """Gemini's list: `pageToken` is the offset of the page, as `nextPageToken` gave it. `own`: the models (provider/id)
    served in Gemini's API itself (None: all of them); the others are translated."""
    ordered = sorted(models, key=lambda m: m.id)
    size = min(max(page_size or GEMINI_PAGE[0], 1), GEMINI_PAGE[1])
    start = int(page_token) if page_token.isdigit() else 0
    doc: dict[str, Any] = {"models": [gemini_model(m, own is None or m.qualified in own)
                                      for m in ordered[start:start + size]]}
    if start + size < len(ordered):
        doc["nextPageToken"] = str(start + size)
    return doc
