"""Tokens per minute and teams: the window's arithmetic (refused at or over the limit, told when it is under again),
which counts a request is held against and charged to, the refusals' words, and the config that declares them.
Redis's counter: tests/integration/test_tokens_redis.py; through Envoy: tests/e2e/test_token_limits.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.config import parse_settings
from extproc.core import rate
from extproc.core.budget import Budget
from extproc.core.clients import ClientKey, Team, token_counter
from extproc.core.errors import ConfigError
from extproc.state.spend import LocalSpend
from extproc.state.tokens import LocalTokens
from extproc.usage.limits import Limits, counted_tokens
from extproc.usage.record import UsageRecord
from extproc.usage.tokens import Usage
from tests.clock import Clock

T0 = 1_700_000_040.0  # 0 s into a minute


def _counts_at(later: float, now: float, previous: int, current: int) -> tuple[int, int]:
    shift = rate.window_start(later) - rate.window_start(now)
    return (previous, current) if shift == 0 else (current, 0) if shift == 1 else (0, 0)


@given(st.integers(1, 10_000), st.integers(0, 30_000), st.integers(0, 30_000), st.floats(0, 1e7, allow_nan=False))
def test_the_wait_told_is_the_first_whole_second_the_count_is_under_the_limit(
        tpm: int, previous: int, current: int, now: float) -> None:
    if rate.under(previous, current, now, tpm):
        return
    wait = rate.wait_until_under(previous, current, now, tpm)
    assert wait >= 1
    assert rate.under(*_counts_at(now + wait, now, previous, current), now + wait, tpm)
    if wait > 1:
        earlier = now + wait - 1.001
        assert not rate.under(*_counts_at(earlier, now, previous, current), earlier, tpm)


def test_a_count_at_the_limit_is_refused_and_one_under_it_is_not() -> None:
    assert not rate.under(0, 100, T0, 100)
    assert rate.under(0, 99, T0, 100)
    assert not rate.under(200, 0, T0 + 30, 100)  # half of the previous minute still counts: 100
    assert rate.under(200, 0, T0 + 30.5, 100)


def record(client: str, requested: str, usage: Usage | None, cost: float = 0.0) -> UsageRecord:
    return UsageRecord("rid", client, "openai", requested, requested, "openai", "openai:key1", 1, 200, False, 0.1,
                       None, usage, cost)


def test_every_input_token_and_every_output_token_counts() -> None:
    used = Usage(input=10, output=5, cache_read=100, cache_write=7, reasoning=3)  # reasoning is part of output
    assert counted_tokens(record("k", "m", used)) == 122
    assert counted_tokens(record("k", "m", None)) == 0


CREW = Team("crew", budget=Budget(1.0, "week"), rpm=5, tpm=100)
ALICE = ClientKey("alice", tpm=50, tpm_per_model=(("claude-*", 20),), team=CREW, key="alice-key-0123456789")
BOB = ClientKey("bob", team=CREW, key="bob-key-0123456789ab")


def test_a_request_is_held_against_its_key_its_key_on_the_model_and_its_team() -> None:
    assert [c for c, _, _ in ALICE.token_limits("claude-haiku-5-5")] == [
        "alice", token_counter("alice", "claude-*"), token_counter("team:crew")]
    assert [tpm for _, _, tpm in ALICE.token_limits("gpt-5-mini")] == [50, 100]  # the per-model limit is Claude's
    assert [c for c, _, _ in BOB.token_limits("gpt-5-mini")] == [token_counter("team:crew")]
    assert [c for c, _, _ in BOB.rates] == ["team:crew"] and [c for c, _, _ in BOB.budgets] == ["team:crew"]


def test_counter_names_cannot_meet_whatever_keys_and_globs_are_called() -> None:
    assert token_counter("a@b") != token_counter("a", "b")
    assert token_counter("a", "b:c") != token_counter("a:b", "c")
    assert len({token_counter("team:x"), token_counter("team:x", "m"), token_counter("team", "x:m")}) == 3


def test_keys_that_count_per_request_stay_off_the_fast_path() -> None:
    """Requests and tokens per minute are counted by the processor across replicas; a budget alone is not."""
    assert not ALICE.checked_by_envoy and not BOB.checked_by_envoy  # Bob for his team's rpm and tpm
    spender = Team("spenders", budget=Budget(5, "month"))
    assert ClientKey("carol", team=spender, key="carol-key-0123456789").checked_by_envoy
    assert not ClientKey("dave", tpm_per_model=(("gpt-*", 5),), key="dave-key-0123456789a").checked_by_envoy


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def charged(limits: Limits, *records: tuple[UsageRecord, ClientKey]) -> None:
    async def go() -> None:
        for rec, client in records:
            limits.charge(rec, client)
        await limits.settle()

    run(go())


def test_a_key_is_refused_once_its_tokens_reach_the_limit_and_told_when_they_are_under_it_again() -> None:
    clock = Clock(T0)
    limits = Limits(LocalSpend(), LocalTokens(), clock)
    key = ClientKey("solo", tpm=10)
    charged(limits, (record("solo", "m", Usage(input=3, output=4)), key))
    assert run(limits.token_refusal(key, "m")) is None  # 7 < 10
    charged(limits, (record("solo", "m", Usage(input=3, output=4)), key))
    refusal = run(limits.token_refusal(key, "m"))
    assert refusal is not None and refusal.status == 429 and refusal.kind == "rate_limit_exceeded"
    assert refusal.message == "The client key 'solo' is over its 10 tokens per minute; retry in 78s."
    # 14 this minute: in the next one they weigh 14 · (1 − t/60), under 10 from t > 17.1 s: 60 + 18 s from now.
    assert refusal.retry_after == 78
    clock.now += 77
    assert run(limits.token_refusal(key, "m")) is not None
    clock.now += 1
    assert run(limits.token_refusal(key, "m")) is None


def test_a_team_is_shared_by_its_keys_and_each_keys_own_limit_still_applies() -> None:
    clock = Clock(T0)
    limits = Limits(LocalSpend(), LocalTokens(), clock)
    charged(limits, (record("alice", "claude-haiku-5-5", Usage(input=15, output=5)), ALICE))
    over_model = run(limits.token_refusal(ALICE, "claude-haiku-5-5"))
    assert over_model is not None and "'alice' on 'claude-*'" in over_model.message
    assert run(limits.token_refusal(ALICE, "gpt-5-mini")) is None  # 20 of her 50; the team's 20 of 100
    charged(limits, (record("bob", "gpt-5-mini", Usage(input=60, output=20)), BOB))
    over_team = run(limits.token_refusal(ALICE, "gpt-5-mini"))  # Bob's 80 and her 20: the team's 100
    assert over_team is not None and over_team.message.startswith("The team 'crew' of the client key 'alice' is over")
    assert run(limits.token_refusal(BOB, "gpt-5-mini")) is not None


def test_a_team_budget_spent_by_one_key_refuses_the_others_until_the_week_turns() -> None:
    clock = Clock(1_798_761_600.0)  # 2027-01-01T00:00:00Z, a Friday
    limits = Limits(LocalSpend(), LocalTokens(), clock)
    carol = ClientKey("carol", budget=Budget(10, "day"), team=CREW)
    charged(limits, (record("bob", "gpt-5-mini", None, cost=0.6), BOB))
    assert run(limits.budget_refusal(carol)) is None
    charged(limits, (record("bob", "gpt-5-mini", None, cost=0.5), BOB))
    refusal = run(limits.budget_refusal(carol))
    assert refusal is not None and refusal.kind == "budget_exceeded"
    assert refusal.retry_after == 3 * 86400  # Monday 2027-01-04
    assert refusal.message == "The team 'crew' of the client key 'carol' has spent its $1 budget for this week; " \
                              "it resets in 259200s."
    assert run(limits.spend.spent("carol", "2027-01-01")) == 0.0  # her own budget was not charged for Bob's
    clock.now += 3 * 86400
    assert run(limits.budget_refusal(carol)) is None


# ---------------------------------------------------------------- config

KEYS = [{"name": "alice", "key": "alice-key-0123456789", "tpm": 1000, "tpm_per_model": {"claude-*": 300}},
        {"name": "bob", "key": "bob-key-0123456789ab"}, {"name": "carol", "key": "carol-key-0123456789"}]


def clients(**section: Any) -> dict[str, Any]:
    return {"clients": {"keys": KEYS, **section}}


def errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, {})
    return str(caught.value).splitlines()


def test_config_gives_each_key_its_team_and_its_token_limits() -> None:
    settings = parse_settings(clients(teams={"crew": {"keys": ["alice", "bob"], "tpm": 5000, "rpm": 60,
                                                      "budget": {"usd": 20, "per": "week"}}}), {})
    alice, bob, carol = settings.clients.keys
    assert alice.tpm == 1000 and alice.tpm_per_model == (("claude-*", 300),)
    assert alice.team == bob.team == Team("crew", Budget(20, "week"), 60, 5000) and carol.team is None


def test_config_reports_every_team_error_at_once_naming_the_key_and_the_fix() -> None:
    found = errors(clients(teams={"crew": {"keys": ["alice", "bobb"], "tpm": 10},
                                  "ops": {"keys": ["alice", "carol"], "rpm": 5},
                                  "idle": {"keys": ["carol"]},
                                  "odd": {"keys": ["bob"], "tpm": 0, "seats": 3}}))
    assert "clients.teams.crew.keys[1]: no client key is named 'bobb' (did you mean bob?); list the names of " \
           "clients.keys" in found
    assert "clients.teams.ops.keys[0]: 'alice' is in the team 'crew' already; a key belongs to one team at most, so " \
           "remove it from one of them" in found
    assert any(m.startswith("clients.teams.idle: a team shares a budget, rpm or tpm") for m in found)
    assert any(m.startswith("clients.teams.odd.seats: unknown key") for m in found)
    assert "clients.teams.odd.tpm: expected a whole number > 0, got 0" in found
    assert len(found) == 5


@pytest.mark.parametrize(("entry", "key"), [
    ({"tpm": 0}, "clients.keys[0].tpm"),
    ({"tpm_per_model": {"claude-*": -1}}, "clients.keys[0].tpm_per_model.claude-*"),
    ({"tpm_per_model": {}}, "clients.keys[0].tpm_per_model"),
    ({"tpm_per_model": ["claude-*"]}, "clients.keys[0].tpm_per_model"),
])
def test_bad_token_limits_name_their_key(entry: dict[str, Any], key: str) -> None:
    found = errors({"clients": {"keys": [{"name": "k", "key": "k-key-0123456789ab", **entry}]}})
    assert [m.split(": ", 1)[0] for m in found] == [key]


def test_a_key_named_where_a_team_keeps_its_counts_is_refused() -> None:
    found = errors({"clients": {"keys": [*KEYS, {"name": "team:crew", "key": "clash-key-0123456789"}],
                                "teams": {"crew": {"keys": ["bob"], "rpm": 5}}}})
    assert found == ["clients.teams.crew: a client key is named 'team:crew', which is where this team's counts are "
                     "kept; rename the key or the team"]
