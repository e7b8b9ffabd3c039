"""The models and the request the end-to-end request-path tests share: one model per built-in provider."""

from __future__ import annotations

from typing import Any

CHAT = [{"role": "user", "content": "hi"}]
CLIENT_KEY = "client-key-should-not-leave"  # what clients send as their own key

MODELS: list[dict[str, Any]] = [
    {"id": "oa-chat", "provider": "openai", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 1.0, "output_price": 4.0, "capabilities": ["tools", "vision", "streaming"]},
    {"id": "oa-cheap", "provider": "openai", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 0.1, "output_price": 0.4, "capabilities": ["tools", "streaming"]},
    {"id": "mi-chat", "provider": "mistral", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 1.0, "output_price": 4.0, "capabilities": ["tools", "vision", "streaming"]},
    {"id": "an-chat", "provider": "anthropic", "context_window": 200000, "max_output_tokens": 8000,
     "input_price": 3.0, "output_price": 15.0, "capabilities": ["tools", "vision", "streaming", "reasoning"]},
    {"id": "ge-chat", "provider": "gemini", "context_window": 1000000, "max_output_tokens": 8000,
     "input_price": 0.3, "output_price": 2.5, "capabilities": ["tools", "vision", "streaming"]},
]
