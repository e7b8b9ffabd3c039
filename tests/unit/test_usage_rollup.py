"""The pure half of the usage store: records folded into totals at three resolutions, buckets, filters, and the
`console.usage_store` key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from extproc.config import parse_settings
from extproc.core.errors import ConfigError
from extproc.state.stores import usage_file
from extproc.usage.record import UsageRecord
from extproc.usage.rollup import (
    ALL,
    DAY,
    HOUR,
    MINUTE,
    RECENT_CAP,
    Batch,
    bucket,
    check_filters,
    matches,
    points,
    resolution,
    starts,
    totals_of,
)
from extproc.usage.store import Point, Totals
from extproc.usage.tokens import Usage
from tests.conftest import STATE_KEY

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


TOKENS = Usage(3, 4)


def rec(rid: str = "r", *, client: str = "team", served: str = "gpt-x", requested: str = "gpt-x",
        provider: str = "openai", status: int = 200, cost: float = 0.5, usage: Usage | None = TOKENS) -> UsageRecord:
    return UsageRecord(rid, client, "openai", requested, served, provider, "openai:key1" if served else "", 1, status,
                       False, 0.1, None, usage, cost)


# ---------------------------------------------------------------- totals

def test_one_record_counts_its_tokens_and_cost() -> None:
    assert totals_of(rec()) == Totals(1, 0, 3, 4, 0.5)


@pytest.mark.parametrize(("status", "served", "errors"), [(200, "gpt-x", 0), (399, "gpt-x", 0), (429, "gpt-x", 1),
                                                         (502, "gpt-x", 1), (200, "", 1), (401, "", 1)])
def test_an_error_is_a_status_of_400_or_more_or_a_request_nothing_served(status: int, served: str,
                                                                          errors: int) -> None:
    assert totals_of(rec(status=status, served=served)).errors == errors


def test_a_record_without_usage_counts_no_tokens() -> None:
    assert totals_of(rec(usage=None, cost=0.0)) == Totals(1, 0, 0, 0, 0.0)


def test_a_batch_counts_each_record_at_every_resolution_and_in_every_dimension() -> None:
    batch = Batch()
    batch.fold(rec("a"), T0)
    batch.fold(rec("b", client="", served="", requested="gpt-y", provider="", status=401, cost=0.0, usage=None), T0)
    minute = bucket(T0, MINUTE)
    assert batch.totals[(MINUTE, minute, ALL, "")] == Totals(2, 1, 3, 4, 0.5)
    assert batch.totals[(HOUR, bucket(T0, HOUR), ALL, "")] == Totals(2, 1, 3, 4, 0.5)
    assert batch.totals[(DAY, bucket(T0, DAY), ALL, "")] == Totals(2, 1, 3, 4, 0.5)
    # The model that served it, else the one asked for; "-" where a request had none (no key, no credential).
    assert batch.totals[(MINUTE, minute, "model", "gpt-x")].requests == 1
    assert batch.totals[(MINUTE, minute, "model", "gpt-y")].errors == 1
    assert batch.totals[(MINUTE, minute, "client", "-")].requests == 1
    assert batch.totals[(MINUTE, minute, "credential", "-")].requests == 1
    assert batch.totals[(MINUTE, minute, "credential", "openai:key1")].cost == 0.5
    assert len(batch.totals) == 3 * (1 + 2 + 2 + 2 + 2)
    assert [(d["request_id"], d["at"]) for d in batch.records] == [("a", T0), ("b", T0)]


def test_a_stored_record_never_holds_the_prompt_or_the_answer() -> None:
    batch = Batch()
    batch.fold(dataclasses.replace(rec(), bodies=(("request_body", "secret plans"), ("response_body", "more"))), T0)
    assert "request_body" not in batch.records[0] and "response_body" not in batch.records[0]
    assert batch.records[0]["request_id"] == "r"


def test_a_batch_kept_after_a_failed_write_merges_with_what_came_after() -> None:
    kept, later = Batch(), Batch()
    kept.fold(rec("a"), T0)
    later.fold(rec("b", cost=0.25), T0)
    later.fold(rec("c"), T0 + 60)
    merged = kept.merge(later)
    assert merged.totals[(MINUTE, bucket(T0, MINUTE), ALL, "")] == Totals(2, 0, 6, 8, 0.75)
    assert merged.totals[(HOUR, bucket(T0, HOUR), ALL, "")].requests == 3
    assert [d["request_id"] for d in merged.records] == ["a", "b", "c"]
    assert kept.totals[(HOUR, bucket(T0, HOUR), ALL, "")].requests == 1  # merging left the kept batch as it was


def test_a_batch_holds_no_more_records_than_a_store_keeps() -> None:
    batch = Batch()
    for i in range(RECENT_CAP + 5):
        batch.fold(rec(str(i)), T0)
    assert len(batch.records) == RECENT_CAP and batch.records[0]["request_id"] == "5"
    assert len(batch.merge(batch).records) == RECENT_CAP


def test_an_empty_batch_is_false() -> None:
    batch = Batch()
    assert not batch
    batch.fold(rec(), T0)
    assert batch


# ---------------------------------------------------------------- buckets

def test_buckets_are_aligned_to_the_epoch_so_hours_and_days_are_utc_ones() -> None:
    assert bucket(T0, MINUTE) == 1_699_999_980
    assert bucket(T0, HOUR) == 1_699_999_200
    assert bucket(T0, DAY) == 1_699_920_000  # 2023-11-14T00:00:00Z


@pytest.mark.parametrize(("step", "res"), [(60, MINUTE), (300, MINUTE), (3600, HOUR), (7200, HOUR), (86400, DAY),
                                           (7 * 86400, DAY), (5400, MINUTE)])
def test_a_series_reads_the_coarsest_resolution_its_step_allows(step: int, res: int) -> None:
    assert resolution(step) == res


@pytest.mark.parametrize("step", [30, 90, 0])
def test_a_step_that_is_not_whole_minutes_is_refused(step: int) -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        resolution(step)


def test_the_buckets_a_series_reads_start_in_the_one_since_falls_in_and_stop_before_until() -> None:
    assert list(starts(T0 - 120, T0, MINUTE)) == [1_699_999_860, 1_699_999_920, 1_699_999_980]
    assert list(starts(1_699_999_980, 1_699_999_980, MINUTE)) == []
    assert list(starts(T0 - DAY, T0, DAY)) == [1_699_833_600, 1_699_920_000]


def test_points_sum_finer_buckets_into_the_step_per_value_in_order() -> None:
    rows = [(0, "b", Totals(1, 0, 1, 1, 0.5)), (60, "a", Totals(2, 1, 0, 0, 0.0)), (3600, "a", Totals(1, 0, 0, 0, 0.0)),
            (120, "b", Totals(1, 1, 1, 1, 0.25))]
    assert points(rows, HOUR) == [Point(0.0, "a", Totals(2, 1, 0, 0, 0.0)), Point(0.0, "b", Totals(2, 1, 2, 2, 0.75)),
                                  Point(3600.0, "a", Totals(1, 0, 0, 0, 0.0))]


# ---------------------------------------------------------------- filters

DOC = rec(status=429).doc()


@pytest.mark.parametrize(("filters", "expected"), [
    (None, True), ({}, True), ({"client": "team"}, True), ({"client": "other"}, False),
    ({"model": "gpt-x"}, True), ({"provider": "anthropic"}, False), ({"status": "429"}, True),
    ({"status": "4xx"}, True), ({"status": "5xx"}, False), ({"status": "failed"}, True), ({"status": "served"}, False),
    ({"client": "team", "status": "200"}, False), ({"client": "", "model": ""}, True),
])
def test_a_record_matches_every_filter_given(filters: dict[str, str] | None, expected: bool) -> None:
    assert matches(DOC, filters) is expected


def test_a_model_filter_matches_the_model_asked_for_as_well_as_the_one_that_served() -> None:
    doc = rec(requested="fast", served="gpt-x").doc()
    assert matches(doc, {"model": "fast"}) and matches(doc, {"model": "gpt-x"}) and not matches(doc, {"model": "x"})


def test_an_unknown_filter_is_refused() -> None:
    with pytest.raises(ValueError, match="no usage filter 'key'"):
        check_filters({"key": "team"})


# ---------------------------------------------------------------- console.usage_store

def usage_store(console: object, **raw: object) -> str:
    return parse_settings({**raw, "console": console}, {}).usage_store


def test_usage_is_kept_by_default_and_the_key_picks_off_redis_sqlite_or_a_file() -> None:
    assert parse_settings({}, {}).usage_store == "auto"
    assert usage_store({"usage_store": False}) == "off"
    assert usage_store({"usage_store": "sqlite"}) == "sqlite"
    assert usage_store({"usage_store": "/var/lib/extproc/usage.db"}) == "/var/lib/extproc/usage.db"
    redis = {"redis": {"url": "redis://127.0.0.1:6379/0", "key": STATE_KEY}}
    assert usage_store({"usage_store": "redis"}, state=redis) == "redis"


@pytest.mark.parametrize(("console", "fragment"), [
    ({"usage_store": "redis"}, "console.usage_store: redis needs state.redis.url; set state.redis"),
    ({"usage_store": True}, "console.usage_store: expected false"),
    ({"usage_store": ""}, "console.usage_store: expected false"),
    ({"usage_store": "/var/lib/"}, "console.usage_store: '/var/lib/' is a directory; name a file in it"),
    ({"store": "x"}, "console.store"),
    ("yes", "console"),
])
def test_a_bad_usage_store_names_the_key_and_the_fix(console: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        usage_store(console)


def test_the_usage_file_is_beside_the_accounts_file_unless_named(tmp_path: Path) -> None:
    beside = parse_settings({"auth": {"store": str(tmp_path / "accounts.json")}}, {})
    assert usage_file(beside) == tmp_path / "usage.sqlite3"
    named = parse_settings({"console": {"usage_store": "~/figures.db"}}, {})
    assert usage_file(named) == Path.home() / "figures.db"
