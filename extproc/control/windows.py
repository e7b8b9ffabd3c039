"""A subscription's usage windows as the Auth and Models APIs show them."""

from __future__ import annotations

import datetime as dt

from extproc.core.windows import WindowState
from extproc.v1 import auth_pb2


def rfc3339(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat()


def window_messages(state: WindowState) -> list[auth_pb2.Window]:
    out = []
    for level in state.levels:
        window = auth_pb2.Window(name=level.name, used=round(level.utilization, 4))
        if level.resets_at is not None:
            window.resets_at = rfc3339(level.resets_at)
        out.append(window)
    return out
