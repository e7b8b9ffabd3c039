"""Waiting for what a test can observe: a log line, a model's card, a request at a fake, a process gone.

A test never sleeps to let something happen; it polls for the state it needs. The one timeout, HANG_GUARD, only
ends a wait that would otherwise hang (a bug); it is generous, so load on the machine never decides a result, and
no test asserts how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

HANG_GUARD = 30.0  # s: a wait for something that must happen fails after this (a hang, never a measured figure)
_POLL = 0.05

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = HANG_GUARD) -> T:
    """What `check()` returns once it is truthy, polled; fails naming `what` if it never is."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(_POLL)
    return found
