"""Client keys' requests per minute: the sliding-window arithmetic and this process's counter (Redis's counter:
tests/integration/test_rate_limit_redis.py)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from extproc.core import rate
from extproc.state.rate_limit import LocalRateLimiter
from tests.clock import Clock


def _counts_at(later: float, now: float, previous: int, current: int) -> tuple[int, int]:
    """The two counters as they stand at `later` when nothing more was counted after `now`."""
    shift = rate.window_start(later) - rate.window_start(now)
    return (previous, current) if shift == 0 else (current, 0) if shift == 1 else (0, 0)


@given(st.integers(1, 100), st.integers(0, 200), st.integers(0, 200), st.floats(0, 1e7, allow_nan=False))
def test_retry_after_is_the_first_whole_second_a_refused_request_would_be_admitted(
        rpm: int, previous: int, current: int, now: float) -> None:
    if rate.admits(previous, current, now, rpm):
        return
    wait = rate.retry_after(previous, current, now, rpm)
    assert wait >= 1
    assert rate.admits(*_counts_at(now + wait, now, previous, current), now + wait, rpm)
    if wait > 1:
        earlier = now + wait - 1.001
        assert not rate.admits(*_counts_at(earlier, now, previous, current), earlier, rpm)


@given(st.integers(1, 50), st.lists(st.floats(0, 300, allow_nan=False), min_size=1, max_size=300))
def test_no_sliding_minute_admits_more_than_rpm(rpm: int, offsets: list[float]) -> None:
    clock = Clock(1_700_000_000.0)
    limiter = LocalRateLimiter(clock)
    admitted: list[float] = []
    for offset in sorted(offsets):
        clock.now = 1_700_000_000.0 + offset
        if asyncio.run(limiter.admit("k", rpm)) is None:
            admitted.append(clock.now)
    # The estimate weights the previous minute linearly, so it can only be stricter than counting every
    # request of the minute-long window that ends at each admission; never looser than 2 × rpm there.
    for i, at in enumerate(admitted):
        assert sum(1 for t in admitted[:i + 1] if t > at - rate.WINDOW) <= 2 * rpm
    in_first_minute = [t for t in admitted if rate.window_start(t) == rate.window_start(admitted[0])]
    assert len(in_first_minute) <= rpm


def test_a_key_over_its_rpm_waits_and_each_key_counts_alone() -> None:
    clock = Clock(60 * 1000.0)  # the start of a minute
    limiter = LocalRateLimiter(clock)

    async def run() -> None:
        assert [await limiter.admit("a", 2) for _ in range(2)] == [None, None]
        wait = await limiter.admit("a", 2)
        assert wait == 90  # this minute is spent, and the next one admits once its weight on these two is ½
        assert await limiter.admit("b", 2) is None
        clock.now += 91  # 2 × (1 − 31/60) + 1 ≤ 2
        assert await limiter.admit("a", 2) is None

    asyncio.run(run())
