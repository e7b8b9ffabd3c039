"""Client keys' and teams' budgets: a period is a calendar day, ISO week (from Monday) or month in UTC, whatever
the machine's time zone; a key is refused once its period's spend reaches its budget, told when the period
resets, and served again from that moment. The periods are checked against an oracle of their own (time.gmtime
and calendar.timegm), not the datetime arithmetic under test. Redis away: tests/integration/test_budget_redis.py."""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.core.budget import PERIODS, Budget, period, seconds_to
from extproc.core.clients import ClientKey
from extproc.state.spend import LocalSpend
from extproc.usage.accounting import Accounting
from extproc.usage.record import UsageRecord
from tests.clock import Clock


def utc(text: str) -> float:
    """An ISO moment in UTC (YYYY-MM-DDTHH:MM:SS), as a timestamp."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")))


def oracle(now: float, per: str) -> tuple[str, float]:
    """The UTC calendar period `now` falls in, and when the next one starts."""
    at = time.gmtime(now)
    if per == "day":
        start = calendar.timegm((at.tm_year, at.tm_mon, at.tm_mday, 0, 0, 0))
        return f"{at.tm_year:04d}-{at.tm_mon:02d}-{at.tm_mday:02d}", float(start + 86400)
    if per == "week":  # tm_wday: Monday is 0
        monday = calendar.timegm((at.tm_year, at.tm_mon, at.tm_mday, 0, 0, 0)) - at.tm_wday * 86400
        return time.strftime("%G-W%V", time.gmtime(monday)), float(monday + 7 * 86400)
    year, month = (at.tm_year + 1, 1) if at.tm_mon == 12 else (at.tm_year, at.tm_mon + 1)
    return f"{at.tm_year:04d}-{at.tm_mon:02d}", float(calendar.timegm((year, month, 1, 0, 0, 0)))


# Whole milliseconds from 1970 to 2100: the resolution a request's time has (a float a hair under midnight would
# round to the microsecond past it, which is no one's midnight).
MOMENTS = st.integers(0, 4_102_444_800_000).map(lambda ms: ms / 1000)


@given(MOMENTS, st.sampled_from(PERIODS))
def test_a_moment_falls_in_its_utc_day_or_month_and_the_next_one_starts_at_the_reset(now: float, per: str) -> None:
    name, reset = period(now, per)
    assert (name, reset) == oracle(now, per)
    assert now < reset
    assert period(reset - 0.001, per)[0] == name and period(reset, per)[0] != name


@pytest.mark.parametrize(("now", "per", "expected"), [
    ("2026-12-31T23:59:59", "day", ("2026-12-31", "2027-01-01T00:00:00")),
    ("2027-01-01T00:00:00", "day", ("2027-01-01", "2027-01-02T00:00:00")),
    ("2026-12-31T23:59:59", "month", ("2026-12", "2027-01-01T00:00:00")),
    ("2027-02-28T12:00:00", "month", ("2027-02", "2027-03-01T00:00:00")),
    ("2028-02-28T23:59:59", "day", ("2028-02-28", "2028-02-29T00:00:00")),  # a leap year
    ("2028-02-29T23:59:59", "month", ("2028-02", "2028-03-01T00:00:00")),
    ("2027-04-30T23:59:59", "month", ("2027-04", "2027-05-01T00:00:00")),
    ("2026-12-31T23:59:59", "week", ("2026-W53", "2027-01-04T00:00:00")),  # a Thursday: ISO year 2026's 53rd week
    ("2027-01-04T00:00:00", "week", ("2027-W01", "2027-01-11T00:00:00")),  # the Monday it ends on
    ("2027-01-03T12:00:00", "week", ("2026-W53", "2027-01-04T00:00:00")),  # a Sunday of 2027 in 2026's week
])
def test_period_boundaries(now: str, per: str, expected: tuple[str, str]) -> None:
    assert period(utc(now), per) == (expected[0], utc(expected[1]))


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The process's time zone, set by the test and put back after."""
    yield monkeypatch
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("zone", "local_day"), [("Pacific/Kiritimati", 1), ("America/Adak", 31),
                                                 ("Asia/Kathmandu", 1), ("Europe/London", 31)])
def test_periods_are_utc_whatever_the_machines_time_zone(local_zone: pytest.MonkeyPatch, zone: str,
                                                         local_day: int) -> None:
    late = utc("2026-12-31T23:30:00")  # already 2027 in Kiritimati (UTC+14), mid-afternoon in Adak (UTC-10)
    local_zone.setenv("TZ", zone)
    time.tzset()
    assert time.localtime(late).tm_mday == local_day  # the zone took effect
    assert period(late, "day") == ("2026-12-31", utc("2027-01-01T00:00:00"))
    assert period(late, "month") == ("2026-12", utc("2027-01-01T00:00:00"))


@pytest.mark.parametrize(("left", "told"), [(60.0, 60), (59.2, 60), (0.2, 1), (0.0, 1), (-5.0, 1)])
def test_the_wait_told_is_whole_seconds_and_never_zero(left: float, told: int) -> None:
    now = utc("2026-12-31T23:00:00")
    assert seconds_to(now + left, now) == told


# ---------------------------------------------------------------- a key's budget through the accounting

def charge(usd: float) -> UsageRecord:
    """A served request of the key "team" that cost `usd`."""
    return UsageRecord("req", "team", "openai", "gpt-x", "gpt-x", "openai", "openai:key1", 1, 200, False, 0.1,
                       None, None, usd)


def spend_at(accounting: Accounting, key: ClientKey, *costs: float) -> None:
    async def run() -> None:
        for usd in costs:
            accounting.record(charge(usd), key)
        await accounting.settle()

    asyncio.run(run())


def over(accounting: Accounting, key: ClientKey) -> int | None:
    return asyncio.run(accounting.over_budget(key))


def test_a_spent_key_is_refused_until_its_day_resets_at_utc_midnight() -> None:
    clock = Clock(utc("2026-12-31T23:59:00"))
    key = ClientKey("team", budget=Budget(1.0, "day"))
    ledger = LocalSpend()
    accounting = Accounting(ledger, clock)
    spend_at(accounting, key, 0.6)
    assert over(accounting, key) is None  # under the budget
    spend_at(accounting, key, 0.5)
    assert over(accounting, key) == 60  # a minute to midnight UTC
    clock.now = utc("2027-01-01T00:00:00")
    assert over(accounting, key) is None  # a new day: nothing spent in it yet
    assert asyncio.run(ledger.spent("team", "2026-12-31")) == pytest.approx(1.1)
    assert asyncio.run(ledger.spent("team", "2027-01-01")) == 0.0


def test_a_charge_counts_in_the_period_of_the_moment_it_is_made() -> None:
    clock = Clock(utc("2027-02-28T23:59:59"))
    key = ClientKey("team", budget=Budget(1.0, "month"))
    ledger = LocalSpend()
    accounting = Accounting(ledger, clock)
    spend_at(accounting, key, 0.7)
    clock.now += 1  # March, UTC
    spend_at(accounting, key, 0.2)
    assert asyncio.run(ledger.spent("team", "2027-02")) == pytest.approx(0.7)
    assert asyncio.run(ledger.spent("team", "2027-03")) == pytest.approx(0.2)
    assert over(accounting, key) is None


def test_a_key_without_a_budget_is_never_over_it_and_nothing_is_charged() -> None:
    clock = Clock(utc("2026-12-31T12:00:00"))
    ledger = LocalSpend()
    accounting = Accounting(ledger, clock)
    free = ClientKey("team")
    spend_at(accounting, free, 5.0)
    assert over(accounting, free) is None
    assert asyncio.run(ledger.spent("team", "2026-12-31")) == 0.0
