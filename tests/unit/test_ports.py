"""Server ports: the suite's pytest-xdist workers hand out ports from slices that never overlap."""

from __future__ import annotations

from bench.ports import share

PORTS = range(10000, 32768)


def test_each_xdist_worker_takes_its_own_slice_and_other_processes_the_whole_range() -> None:
    slices = [share(PORTS, f"gw{i}", "3") for i in range(3)]
    assert all(len(s) == len(PORTS) // 3 for s in slices)
    assert set(slices[0]).isdisjoint(slices[1]) and set(slices[1]).isdisjoint(slices[2])
    assert slices[0].start == PORTS.start and slices[2].stop <= PORTS.stop
    assert share(PORTS, None, None) == PORTS and share(PORTS, "master", "2") == PORTS
    assert share(PORTS, "gw0", "1") == PORTS
