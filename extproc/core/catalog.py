"""Model metadata: the typed record the registry works with (the built-in catalog is package data)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CAPABILITIES = frozenset({"vision", "tools", "reasoning", "structured_output", "streaming"})
MODES = frozenset({"chat", "embedding"})
STATUSES = frozenset({"active", "beta", "deprecated"})


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    provider: str
    mode: str = "chat"
    context_window: int = 0  # 0: unknown, never used to reject a request
    max_output_tokens: int = 0
    input_price: float = 0.0  # USD per million tokens
    output_price: float = 0.0
    cache_read_price: float | None = None  # USD per million tokens read from a prompt cache; None: input_price
    cache_write_price: float | None = None  # … written into one; None: input_price
    capabilities: frozenset[str] = frozenset({"streaming"})
    status: str = "active"
    created: dt.date | None = None
    translation: bool = True  # a request of another API may be translated for it (translation: false: never)
    discovered: bool = False  # listed by the provider, unknown to the catalog: metadata is what it said
    endpoints: frozenset[str] | None = None  # the provider endpoints it is served on (its list says); None: all

    @property
    def qualified(self) -> str:
        return f"{self.provider}/{self.id}"

    @property
    def blended_price(self) -> float:
        """One number to rank by cost: a 3:1 input:output token mix, the usual chat shape."""
        return (3 * self.input_price + self.output_price) / 4

    @property
    def created_ts(self) -> int:
        if self.created is None:
            return 0
        return int(dt.datetime.combine(self.created, dt.time(), dt.UTC).timestamp())
