"""Every error of a config in one run: validation goes on past each one, and the list follows the file.

While `collecting()`, `report` notes an error instead of raising it and `keep` swaps a failed part for a
stand-in, so the parts after it are still checked; outside, both raise at once (a section parsed alone).
The errors come out in the order their keys appear in the file (`in_file_order`), one per key.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

import yaml

from extproc.core.errors import ConfigError

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F")

_found: ContextVar[list[str] | None] = ContextVar("config_errors", default=None)


class ConfigErrors(ConfigError):
    """Several config errors, each `key: what is wrong and the fix`; str() lists them one a line."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


def messages_of(error: ConfigError) -> tuple[str, ...]:
    return error.messages if isinstance(error, ConfigErrors) else (str(error),)


def key_of(message: str) -> str:
    """The dotted key an error names first (`providers.acme.apis: …` → `providers.acme.apis`)."""
    return message.split(": ", 1)[0]


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the errors of the parse run inside the block, instead of stopping at the first."""
    found: list[str] = []
    token = _found.set(found)
    try:
        yield found
    finally:
        _found.reset(token)


def report(error: ConfigError) -> None:
    """Note an error and go on while collecting (the first per key counts: a later one is its echo); else raise."""
    found = _found.get()
    if found is None:
        raise error
    seen = {key_of(m) for m in found}
    for message in messages_of(error):
        if key_of(message) not in seen:
            found.append(message)
            seen.add(key_of(message))


def keep(fallback: F, parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | F:
    """`parse(*args)`, or `fallback` once its error is reported (raised when not collecting)."""
    try:
        return parse(*args, **kwargs)
    except ConfigError as exc:
        report(exc)
        return fallback


_LAST_PART = re.compile(r"(\.[^.\[]*|\[[^\]]*\])$")


def in_file_order(messages: Sequence[str], text: str) -> list[str]:
    """The messages sorted by where their keys are in the YAML text (a key the file lacks: its nearest parent;
    none at all, e.g. a built-in's: last), stable otherwise."""
    try:
        places = _positions(yaml.compose(text, Loader=yaml.SafeLoader), "")
    except yaml.YAMLError:
        return list(messages)
    end = (float("inf"), 0.0)

    def place(message: str) -> tuple[float, float]:
        key = key_of(message)
        while key:
            if key in places:
                return places[key]
            trimmed = _LAST_PART.sub("", key)
            key = "" if trimmed == key else trimmed
        return end

    return sorted(messages, key=place)


def _positions(node: Any, prefix: str) -> dict[str, tuple[float, float]]:
    """Dotted key → (line, column) of every key and list item; a list item with an `id` is also found by it
    (`models[gpt-6-luna]`, as the models section names its entries)."""
    found: dict[str, tuple[float, float]] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            name = str(key_node.value)
            path = f"{prefix}.{name}" if prefix else name
            found.setdefault(path, (key_node.start_mark.line, key_node.start_mark.column))
            found.update({k: v for k, v in _positions(value, path).items() if k not in found})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            paths = [f"{prefix}[{i}]"]
            if isinstance(item, yaml.MappingNode):
                paths += [f"{prefix}[{v.value}]" for k, v in item.value
                          if k.value == "id" and isinstance(v, yaml.ScalarNode)]
            for path in paths:
                found.setdefault(path, (item.start_mark.line, item.start_mark.column))
                found.update({k: v for k, v in _positions(item, path).items() if k not in found})
    return found
