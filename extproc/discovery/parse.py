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
    capabilities: frozenset[str] | None = None  # what the list says the model supports; None: it did not say
    paths: tuple[str, ...] | None = None  # the provider paths it is served on (Copilot's supported_endpoints)


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
    read = _copilot if style == "copilot" else _openai_like
    models = [m for m in (read(item) for item in items) if m is not None]
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


# Copilot's `capabilities.supports` flags → the catalog's capabilities (any of the reasoning ones: reasoning).
_COPILOT_SUPPORTS = {"tool_calls": "tools", "vision": "vision", "streaming": "streaming",
                     "structured_outputs": "structured_output", "reasoning_effort": "reasoning",
                     "adaptive_thinking": "reasoning", "max_thinking_budget": "reasoning"}
_COPILOT_MODES = {"chat": "chat", "embeddings": "embedding"}  # `completion` (code completions): not served


def _copilot(item: Any) -> Listed | None:
    """One entry of Copilot's /models: its type, limits, what it supports and the endpoints it is served on.
    A model the account's policy disables, or one for code completions, is left out: no request could use it."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    caps = _object(item.get("capabilities"))
    mode = _COPILOT_MODES.get(caps.get("type", "chat"))
    policy = item.get("policy")
    if mode is None or isinstance(policy, dict) and policy.get("state") == "disabled":
        return None
    limits, supports = _object(caps.get("limits")), _object(caps.get("supports"))
    found = frozenset(name for flag, name in _COPILOT_SUPPORTS.items() if supports.get(flag))
    paths = item.get("supported_endpoints")
    return Listed(item["id"], None, _count(limits.get("max_context_window_tokens")),
                  _count(limits.get("max_output_tokens")), mode, found if supports else None,
                  tuple(p for p in paths if isinstance(p, str)) if isinstance(paths, list) else None)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
