"""Ports for servers the benchmarks and the tests start: taken from below the kernel's ephemeral range.

A port picked by binding to port 0 lies in the ephemeral range, and between the pick and the server's own bind
any outgoing connection (Envoy to a fake, a client to Redis) may take it. Below that range only servers bind,
and each port is handed out once per process, so two servers of one run never get the same one. Processes that
pick side by side, the test suite's pytest-xdist workers (and what they start), each take their own slice of
the range, so no two of them ever hand out the same port either.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

HOST = "127.0.0.1"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def share(ports: range, worker: str | None, count: str | None) -> range:
    """This process's slice of `ports`: pytest-xdist's worker `gw<i>` of `count` takes the i-th of `count` equal
    slices; any other process the whole range."""
    if not worker or not worker.startswith("gw") or not count:
        return ports
    index, parts = int(worker[2:]), max(1, int(count))
    size = len(ports) // parts
    return range(ports.start + index * size, ports.start + (index + 1) * size)


_EPHEMERAL = _ephemeral_range()
_SERVER_PORTS = share(range(10000, _EPHEMERAL[0]) if _EPHEMERAL[0] > 12000 else range(_EPHEMERAL[1] + 1, 65536),
                      os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT"))
_HANDED: set[int] = set()
_PICK = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (for processor workers: port + i, then their relays)."""
    while True:
        base = _PICK.randrange(_SERVER_PORTS.start, _SERVER_PORTS.stop - count)
        block = range(base, base + count)
        if not _HANDED.intersection(block) and all(_bindable(port) for port in block):
            _HANDED.update(block)
            return base


def free_port() -> int:
    return free_port_block(1)
