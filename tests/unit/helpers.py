"""Builders for self-contained settings: custom providers and models with explicit facts.

Built-in providers get no key unless a test gives one, so catalog models never win a resolution.
"""

from __future__ import annotations

from typing import Any

from extproc.config import parse_settings
from extproc.core.settings import Settings
from extproc.request.actions import Mutate

ALL_CAPS = ("vision", "tools", "reasoning", "structured_output", "streaming")
# How a request's headers are answered with accounting on: its body, and the answer's headers, are asked for.
ASKS_FOR_THE_ANSWER = Mutate(body_mode="buffered", answer_headers=True)


def provider(apis: dict[str, Any], *keys: str, auth: str = "bearer",
             base_url: str = "https://llm.example.com") -> dict[str, Any]:
    section: dict[str, Any] = {"base_url": base_url, "auth": auth, "apis": apis}
    if keys:
        section["api_keys"] = list(keys)
    return section


def model(model_id: str, provider_name: str, *, price: float = 1.0, caps: tuple[str, ...] = ALL_CAPS,
          context: int = 100_000, max_output: int = 10_000, mode: str = "chat", status: str = "active",
          created: str = "2025-01-01") -> dict[str, Any]:
    """A model whose blended price is `price` (same input and output price)."""
    return {"id": model_id, "provider": provider_name, "mode": mode, "context_window": context,
            "max_output_tokens": max_output, "input_price": price, "output_price": price,
            "capabilities": list(caps), "status": status, "created": created}


def settings(env: dict[str, str] | None = None, **raw: Any) -> Settings:
    return parse_settings(raw, env or {})
