"""What a request cost, from the registry's prices (USD per million tokens). Pure."""

from __future__ import annotations

from extproc.core.catalog import ModelSpec
from extproc.usage.tokens import Usage


def cost(usage: Usage, model: ModelSpec) -> float:
    """Cache reads and writes at their own prices where the catalog has them, else at the input price."""
    read = model.input_price if model.cache_read_price is None else model.cache_read_price
    write = model.input_price if model.cache_write_price is None else model.cache_write_price
    return (usage.input * model.input_price + usage.output * model.output_price
            + usage.cache_read * read + usage.cache_write * write) / 1_000_000
