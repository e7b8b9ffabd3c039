"""The guard that keeps tests/unit pure (its conftest): a unit test that opens a socket, starts a process or a
gRPC server, or sleeps, fails and says where it belongs — also when the code under test swallowed the error."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import grpc
import pytest

from tests.unit.conftest import MOVE_TO, ImpureUnitTest, doors_shut

pytest_plugins = ["pytester"]


def _bind() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


def _connect() -> None:
    with socket.socket() as s:
        s.connect(("127.0.0.1", 9))


def _popen() -> None:
    subprocess.Popen([sys.executable, "-c", "pass"])


def _process() -> None:
    multiprocessing.get_context("fork").Process(target=print).start()


DOORS: dict[str, Callable[[], object]] = {
    "bind a socket": _bind,
    "connect a socket": _connect,
    "start a process": _popen,
    "fork": lambda: os.fork(),
    "start a multiprocessing child": _process,
    "start a gRPC server": lambda: grpc.aio.server(),
    "open a gRPC channel": lambda: grpc.insecure_channel("127.0.0.1:9"),
    "sleep": lambda: time.sleep(0.01),
    "sleep in a coroutine": lambda: asyncio.run(asyncio.sleep(0.01)),
}


@pytest.mark.parametrize("door", DOORS)
def test_each_door_is_shut(door: str) -> None:
    # a guard of its own, inside the one this test runs under
    with doors_shut() as seen, pytest.raises(ImpureUnitTest, match=MOVE_TO):
        DOORS[door]()
    assert seen, "the attempt was not noted"


def test_a_zero_sleep_only_yields_and_is_allowed() -> None:
    asyncio.run(asyncio.sleep(0))
    time.sleep(0)


def test_a_unit_test_that_opens_a_socket_fails_even_if_it_swallows_the_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.unit.conftest import pytest_runtest_call, pytest_runtest_setup, "
                          "pytest_runtest_teardown  # noqa: F401")
    pytester.makepyfile(test_inner="""
        import contextlib, socket

        def test_pure():
            assert sum([1, 2]) == 3

        def test_swallows():
            with contextlib.suppress(Exception), socket.socket() as s:
                s.connect(("127.0.0.1", 9))
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*test_swallows tried to connect a socket during the test*move it to {MOVE_TO}*"])
