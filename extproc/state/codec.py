"""Health changes ⇄ bytes for the shared store: one entry per (table, key), with the time it stops mattering.
Pure: no Redis here."""

from __future__ import annotations

import math
from typing import Any

import orjson

from extproc.core.health import TABLES, Block, Change, Cooldown
from extproc.core.windows import WindowLevel, WindowState

_WINDOWS_KEPT = 8 * 86400.0  # a login's windows, shown until a week's window has surely turned over


def entry_key(table: str, key: tuple[str, ...]) -> str:
    return f"{table}:" + orjson.dumps(list(key)).decode()


def encode_value(table: str, value: object) -> dict[str, Any]:
    if isinstance(value, Cooldown):
        return {"until": _time(value.until), "failures": value.failures, "reason": value.reason,
                "since": value.since, "server_error": value.server_error}
    if isinstance(value, Block):
        return {"kind": value.kind, "until": _time(value.until), "reason": value.reason}
    if isinstance(value, WindowState):
        return {"utilization": value.utilization, "resets_at": value.resets_at, "exhausted": value.exhausted,
                "levels": [[lv.name, lv.utilization, lv.resets_at] for lv in value.levels]}
    if isinstance(value, float | int):
        return {"until": _time(float(value))}
    raise TypeError(f"health table {table} holds a {type(value).__name__}")


def decode_value(table: str, doc: dict[str, Any]) -> object:
    if table == "cooldowns":
        return Cooldown(_until(doc["until"]), int(doc["failures"]), str(doc["reason"]), float(doc["since"]),
                        bool(doc.get("server_error", False)))
    if table == "windows":
        levels = tuple(WindowLevel(str(n), float(u), None if r is None else float(r)) for n, u, r in doc["levels"])
        return WindowState(float(doc["utilization"]), None if doc["resets_at"] is None else float(doc["resets_at"]),
                           bool(doc["exhausted"]), levels)
    if table == "strained":
        return _until(doc["until"])
    return Block(str(doc["kind"]), _until(doc["until"]), str(doc["reason"]))


def change_doc(change: Change) -> dict[str, Any]:
    table, key, value = change
    return {"t": table, "k": list(key), "v": None if value is None else encode_value(table, value)}


def encode_change(change: Change) -> bytes:
    return orjson.dumps(change_doc(change))


def decode_change(raw: bytes | str) -> Change | None:
    """None for what this version does not know (a newer replica's table) or cannot read."""
    try:
        return change_from_doc(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def change_from_doc(doc: Any) -> Change | None:
    try:
        table, key, value = doc["t"], tuple(str(k) for k in doc["k"]), doc["v"]
        if table not in TABLES:
            return None
        return table, key, None if value is None else decode_value(table, value)
    except (KeyError, TypeError, ValueError):
        return None


def expires_in(change: Change, now: float) -> float | None:
    """Seconds the entry matters for (None: until removed); ≤ 0: already over."""
    _, _, value = change
    if isinstance(value, WindowState):
        return _WINDOWS_KEPT
    until = value.until if isinstance(value, Cooldown | Block) else float(value) if isinstance(value, float | int) \
        else math.inf
    return None if until == math.inf else until - now


def _time(value: float) -> float | None:
    return None if value == math.inf else value


def _until(value: Any) -> float:
    return math.inf if value is None else float(value)
