"""The gauges of the current state, from health, the registry and the ledgers' figures: pure rows."""

from __future__ import annotations

import math

from extproc.core.budget import Budget
from extproc.core.clients import ClientKey, Team
from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.windows import WindowLevel, WindowState
from extproc.gauges import (
    AVAILABLE,
    BUDGET,
    BUDGET_LEFT,
    BUDGET_RESETS,
    COOLDOWN_UNTIL,
    RPM_LIMIT,
    RPM_USED,
    SUSPENDED_UNTIL,
    TPM_LIMIT,
    TPM_USED,
    WINDOW_RESETS,
    WINDOW_USED,
    credential_rows,
    exposition,
    families,
    key_rows,
    window_rows,
)
from extproc.usage.standing import Standing, owners
from tests.unit.helpers import model, provider, settings

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SETTINGS = settings(providers={"p": provider({"openai": "/v1"}, "k1", "k2")},
                    models=[model("m", "p"), model("m2", "p")], health={"auth_suspension": 100})
REGISTRY = Registry.build(SETTINGS)
ONE, TWO = "p:key1", "p:key2"


def rows_by_labels(rows: list[tuple[tuple[str, ...], float]]) -> dict[tuple[str, ...], float]:
    return dict(rows)


def test_every_credential_is_available_when_health_knows_nothing() -> None:
    rows = credential_rows(REGISTRY, Health(SETTINGS.health), NOW)
    assert rows_by_labels(rows[AVAILABLE]) == {("p", ONE, "*"): 1.0, ("p", TWO, "*"): 1.0}
    assert set(rows_by_labels(rows[COOLDOWN_UNTIL]).values()) == {0.0}
    assert set(rows_by_labels(rows[SUSPENDED_UNTIL]).values()) == {0.0}


def test_a_cooldown_is_a_row_of_its_model_and_a_suspension_one_of_all_models() -> None:
    health = Health(SETTINGS.health)
    health.observe(ONE, "m", 429, 30, NOW)
    health.observe(TWO, "m2", 401, None, NOW)
    health.observe(ONE, "made-up-by-a-client", 429, 30, NOW)  # no label of its own
    health.suspend(ONE, "refresh refused")  # until a new login: +Inf
    rows = credential_rows(REGISTRY, health, NOW + 1)
    assert rows_by_labels(rows[AVAILABLE]) == {("p", ONE, "*"): 0.0, ("p", ONE, "m"): 0.0, ("p", TWO, "*"): 0.0}
    assert rows_by_labels(rows[COOLDOWN_UNTIL]) == {("p", ONE, "*"): 0.0, ("p", ONE, "m"): NOW + 30,
                                                    ("p", TWO, "*"): 0.0}
    assert rows_by_labels(rows[SUSPENDED_UNTIL]) == {("p", ONE, "*"): math.inf, ("p", ONE, "m"): 0.0,
                                                     ("p", TWO, "*"): NOW + 100}


def test_a_block_that_ended_is_gone_and_a_removed_credential_has_no_row() -> None:
    health = Health(SETTINGS.health)
    health.observe(ONE, "m", 429, 30, NOW)
    health.observe("gone:key1", "m", 401, None, NOW)
    rows = credential_rows(REGISTRY, health, NOW + 30)
    assert rows_by_labels(rows[AVAILABLE]) == {("p", ONE, "*"): 1.0, ("p", TWO, "*"): 1.0}


def test_an_exhausted_window_cools_every_model_and_windows_show_each_level() -> None:
    health = Health(SETTINGS.health)
    state = WindowState(1.0, NOW + 3600, True, (WindowLevel("5h", 1.0, NOW + 3600), WindowLevel("7d", 0.4, None)))
    health.window(ONE, state, NOW, 0.95)
    health.window("gone:key1", state, NOW, 0.95)
    cooling = rows_by_labels(credential_rows(REGISTRY, health, NOW)[COOLDOWN_UNTIL])
    assert cooling[("p", ONE, "*")] == NOW + 3600
    rows = window_rows(REGISTRY, health)
    assert rows[WINDOW_USED] == [((ONE, "5h"), 1.0), ((ONE, "7d"), 0.4)]
    assert rows[WINDOW_RESETS] == [((ONE, "5h"), NOW + 3600), ((ONE, "7d"), 0.0)]


def test_keys_and_teams_show_budget_left_never_below_zero_and_rpm_and_tpm_used() -> None:
    payers = Team("payers", budget=Budget(20.0, "week"), tpm=1000)
    keys = (ClientKey("team", rpm=10, budget=Budget(5.0, "month")), ClientKey("spent", budget=Budget(1.0, "day")),
            ClientKey("free"), ClientKey("a", tpm=300, team=payers), ClientKey("b", team=payers))
    found = owners(keys)
    assert [(o.kind, o.name, o.counter) for o in found] == [
        ("key", "team", "team"), ("key", "spent", "spent"), ("key", "free", "free"), ("key", "a", "a"),
        ("key", "b", "b"), ("team", "payers", "team:payers")]  # a team once, under its own counter
    counted = {"team": (1.25, 4.5, 0.0), "spent": (3.0, 0.0, 0.0), "a": (0.0, 0.0, 120.0),
               "team:payers": (20.5, 0.0, 990.0)}
    assert [o.team for o in found[:5]] == [None, None, None, "payers", "payers"]
    rows = key_rows([Standing(o, *counted.get(o.counter, (0.0, 0.0, 0.0))) for o in found], NOW)
    assert rows[BUDGET] == [(("key", "team"), 5.0), (("key", "spent"), 1.0), (("team", "payers"), 20.0)]
    assert rows[BUDGET_LEFT] == [(("key", "team"), 3.75), (("key", "spent"), 0.0), (("team", "payers"), 0.0)]
    assert rows[BUDGET_RESETS][:2] == [(("key", "team"), 1_801_440_000.0), (("key", "spent"), 1_800_057_600.0)]
    assert (rows[RPM_LIMIT], rows[RPM_USED]) == ([(("key", "team"), 10.0)], [(("key", "team"), 4.5)])
    assert rows[TPM_LIMIT] == [(("key", "a"), 300.0), (("team", "payers"), 1000.0)]
    assert rows[TPM_USED] == [(("key", "a"), 120.0), (("team", "payers"), 990.0)]


def test_the_exposition_has_every_gauge_even_empty_and_inf_as_prometheus_writes_it() -> None:
    health = Health(SETTINGS.health)
    health.suspend(ONE, "refresh refused")
    text = exposition(families(credential_rows(REGISTRY, health, NOW))).decode()
    assert 'extproc_credential_suspended_until_seconds{credential="p:key1",model="*",provider="p"} +Inf' in text
    assert "# TYPE extproc_budget_remaining_usd gauge" in text  # no key with a budget: declared, no sample
