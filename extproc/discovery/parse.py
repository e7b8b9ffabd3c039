"""Providers' model-list answers → plain model records. Pure: bytes in, records out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Listed:
    """What a provider said about one model."""

    id: str
    created: dt.date | None = None
    context_window: int = 0
    max_output_tokens: int = 0
    mode: str = "chat"


class ListError(ValueError):
    """The provider's answer was not a model list."""


def parse_model_list(style: str, body: bytes) -> tuple[list[Listed], str | None]:
    """Models and, when the provider pages, the token/cursor for the next page."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ListError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ListError("not a JSON object")
    if style == "gemini":
        return _gemini(doc)
    items = doc.get("data")
    if not isinstance(items, list):
        raise ListError("no 'data' list")
    models = [m for m in (_openai_like(item) for item in items) if m is not None]
    cursor = doc.get("last_id") if style == "anthropic" and doc.get("has_more") else None
    return models, cursor if isinstance(cursor, str) else None


def _openai_like(item: Any) -> Listed | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    created = None
    if isinstance(item.get("created"), int):
        stamp = item["created"] / 1000 if item["created"] > 100_000_000_000 else item["created"]  # ms or s
        try:
            created = dt.datetime.fromtimestamp(stamp, dt.UTC).date()
        except (ValueError, OverflowError, OSError):
            created = None
    elif isinstance(item.get("created_at"), str):
        try:
            created = dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")).date()
        except ValueError:
            created = None
    context = item.get("context_window") or item.get("max_context_length") or 0
    mode = "embedding" if "embed" in item["id"] else "chat"
    return Listed(item["id"], created, context if isinstance(context, int) else 0, 0, mode)


def _gemini(doc: dict[str, Any]) -> tuple[list[Listed], str | None]:
    items = doc.get("models", [])
    if not isinstance(items, list):
        raise ListError("no 'models' list")
    models = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        methods = item.get("supportedGenerationMethods") or []
        if "generateContent" in methods:
            mode = "chat"
        elif "embedContent" in methods:
            mode = "embedding"
        else:
            continue  # tuning-only, AQA and the like: nothing a client of the gateway can call
        context = item.get("inputTokenLimit")
        output = item.get("outputTokenLimit")
        models.append(Listed(item["name"].removeprefix("models/"), None,
                             context if isinstance(context, int) else 0,
                             output if isinstance(output, int) else 0, mode))
    token = doc.get("nextPageToken")
    return models, token if isinstance(token, str) and token else None
