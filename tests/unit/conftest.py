"""Unit tests are pure: no process, socket, server, Redis or wall-clock sleep, so `pytest tests/unit` runs in
seconds and no result depends on the machine's load. Every phase of a unit test (its fixtures included) runs with
those doors shut: a test that opens one fails, naming what it did, even if the code under test caught the error.
Such a test belongs in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.process
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from tests.fixtures import builtin_data_parsed_once, clock  # noqa: F401  (fixtures, shared with integration)

MOVE_TO = "tests/integration"

# What is shut: (owner, attribute, what a test did by calling it).
DOORS: tuple[tuple[object, str, str], ...] = (
    (socket.socket, "connect", "connect a socket"),
    (socket.socket, "connect_ex", "connect a socket"),
    (socket.socket, "bind", "bind a socket"),
    (subprocess.Popen, "__init__", "start a process"),
    (os, "fork", "start a process"),
    (os, "posix_spawn", "start a process"),
    (os, "posix_spawnp", "start a process"),
    (multiprocessing.process.BaseProcess, "start", "start a process"),
    (grpc, "server", "start a gRPC server"),
    (grpc.aio, "server", "start a gRPC server"),
    (grpc, "insecure_channel", "open a gRPC channel"),
    (grpc.aio, "insecure_channel", "open a gRPC channel"),
)


class ImpureUnitTest(Exception):
    """A unit test reached for the outside world."""


def _refused(what: str, seen: list[str]) -> Callable[..., Any]:
    def door(*_args: Any, **_kwargs: Any) -> Any:
        seen.append(what)
        raise ImpureUnitTest(f"a unit test may not {what}: move it to {MOVE_TO}")

    return door


def _no_waiting(real: Callable[..., Any], seen: list[str]) -> Callable[..., Any]:
    """A zero sleep only yields to other tasks (asyncio.sleep(0)); any other waits on the wall clock."""

    def sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        if delay > 0:
            seen.append("sleep")
            raise ImpureUnitTest(f"a unit test may not sleep (set the hand-set clock instead): move it to {MOVE_TO}")
        return real(delay, *args, **kwargs)

    return sleep


@contextlib.contextmanager
def doors_shut() -> Iterator[list[str]]:
    """While inside: every door in DOORS, and sleeping, raises ImpureUnitTest; the list collects each attempt."""
    seen: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for owner, name, what in DOORS:
            mp.setattr(owner, name, _refused(what, seen))
        mp.setattr(time, "sleep", _no_waiting(time.sleep, seen))
        mp.setattr(asyncio, "sleep", _no_waiting(asyncio.sleep, seen))
        yield seen


def _pure(phase: str, item: pytest.Item) -> Iterator[None]:
    with doors_shut() as seen:
        result = yield
    if seen:  # even when the code under test swallowed the error
        pytest.fail(f"{item.nodeid} tried to {', '.join(dict.fromkeys(seen))} during {phase}; unit tests are pure: "
                    f"move it to {MOVE_TO}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _pure("setup", item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _pure("the test", item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _pure("teardown", item))
