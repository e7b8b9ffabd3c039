from __future__ import annotations

import pytest

from extproc.core.health import Health
from tests.unit.helpers import settings

NOW = 1_000.0
POLICY = settings(health={"backoff_base": 1, "backoff_max": 8, "server_error_cooldown": 5,
                          "auth_suspension": 100, "not_found_suspension": 200}).health
CRED, OTHER_CRED = "p:key1", "p:key2"
MODEL, OTHER_MODEL = "m", "m2"


@pytest.fixture
def health() -> Health:
    return Health(POLICY)


def test_policy_comes_from_config():
    assert (POLICY.backoff_base, POLICY.backoff_max, POLICY.server_error_cooldown, POLICY.auth_suspension,
            POLICY.not_found_suspension) == (1.0, 8.0, 5.0, 100.0, 200.0)


def test_fresh_credential_is_not_blocked(health):
    assert health.blocked(CRED, MODEL, NOW) is None


def test_429_with_retry_after(health):
    block = health.observe(CRED, MODEL, 429, 12, NOW)
    assert (block.kind, block.until) == ("cooldown", NOW + 12)
    assert "429" in block.reason and "12" in block.reason
    assert health.blocked(CRED, MODEL, NOW + 11.9) == block
    assert health.blocked(CRED, MODEL, NOW + 12) is None


def test_429_without_retry_after_backs_off_exponentially_up_to_the_cap(health):
    waits = []
    now = NOW
    for _ in range(6):
        block = health.observe(CRED, MODEL, 429, None, now)
        waits.append(block.until - now)
        assert health.blocked(CRED, MODEL, block.until - 0.01) is not None
        now = block.until  # the next attempt comes when the cooldown ends
    assert waits == [1, 2, 4, 8, 8, 8]


def test_retry_after_zero_does_not_block(health):
    health.observe(CRED, MODEL, 429, 0, NOW)
    assert health.blocked(CRED, MODEL, NOW) is None


def test_success_clears_cooldown_and_resets_backoff(health):
    for _ in range(3):
        health.observe(CRED, MODEL, 429, None, NOW)
    assert health.blocked(CRED, MODEL, NOW) is not None
    assert health.observe(CRED, MODEL, 200, None, NOW) is None
    assert health.blocked(CRED, MODEL, NOW) is None
    assert health.observe(CRED, MODEL, 429, None, NOW).until == NOW + POLICY.backoff_base


def test_cooldown_is_per_credential_and_model(health):
    health.observe(CRED, MODEL, 429, 30, NOW)
    assert health.blocked(CRED, OTHER_MODEL, NOW) is None
    assert health.blocked(OTHER_CRED, MODEL, NOW) is None


def test_401_suspends_the_credential_for_every_model(health):
    block = health.observe(CRED, MODEL, 401, None, NOW)
    assert (block.kind, block.until) == ("suspended", NOW + POLICY.auth_suspension)
    assert "401" in block.reason
    for model_id in (MODEL, OTHER_MODEL, "never-seen"):
        assert health.blocked(CRED, model_id, NOW + 99) == block
    assert health.blocked(OTHER_CRED, MODEL, NOW) is None


def test_403_suspends_only_that_model_on_that_credential(health):
    """A 403 is often about what was asked (a file, a model tier), not the key: other models stay usable."""
    block = health.observe(CRED, MODEL, 403, None, NOW)
    assert (block.kind, block.until) == ("suspended", NOW + POLICY.auth_suspension)
    assert health.blocked(CRED, MODEL, NOW + 99) == block
    assert health.blocked(CRED, OTHER_MODEL, NOW + 99) is None


def test_responses_to_requests_sent_before_a_cooldown_neither_stack_nor_clear_it(health):
    first = health.observe(CRED, MODEL, 429, None, NOW, started=NOW - 1)
    for _ in range(50):  # the rest of a burst that was already in flight
        assert health.observe(CRED, MODEL, 429, None, NOW + 0.1, started=NOW - 1) == first
    assert health.observe(CRED, MODEL, 200, None, NOW + 0.2, started=NOW - 1) is None
    assert health.blocked(CRED, MODEL, NOW + 0.3) == first  # the late success did not clear it
    second = health.observe(CRED, MODEL, 429, None, NOW + 2, started=NOW + 1.5)
    assert second.until == NOW + 2 + 2 * POLICY.backoff_base  # one step of backoff, not fifty
    health.observe(CRED, MODEL, 200, None, NOW + 3, started=NOW + 2.5)
    assert health.blocked(CRED, MODEL, NOW + 3) is None


def test_backoff_never_overflows(health):
    for i in range(2000):
        block = health.observe(CRED, MODEL, 429, None, NOW + i)
    assert block.until == NOW + 1999 + POLICY.backoff_max


def test_404_suspends_only_that_model_on_that_credential(health):
    block = health.observe(CRED, MODEL, 404, None, NOW)
    assert (block.kind, block.until) == ("suspended", NOW + POLICY.not_found_suspension)
    assert health.blocked(CRED, MODEL, NOW + 199) == block
    assert health.blocked(CRED, OTHER_MODEL, NOW) is None
    assert health.blocked(OTHER_CRED, MODEL, NOW) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
def test_server_error_short_cooldown(health, status):
    block = health.observe(CRED, MODEL, status, None, NOW)
    assert (block.kind, block.until) == ("cooldown", NOW + POLICY.server_error_cooldown)
    assert str(status) in block.reason
    assert health.blocked(CRED, OTHER_MODEL, NOW) is None


def test_server_error_honours_retry_after(health):
    assert health.observe(CRED, MODEL, 503, 42, NOW).until == NOW + 42


@pytest.mark.parametrize("status", [400, 402, 409, 413, 422])
def test_other_client_errors_change_nothing(health, status):
    health.observe(CRED, MODEL, 429, 10, NOW)
    before = health.blocked(CRED, MODEL, NOW)
    assert health.observe(CRED, MODEL, status, None, NOW) is None
    assert health.observe(CRED, OTHER_MODEL, status, None, NOW) is None
    assert health.blocked(CRED, MODEL, NOW) == before  # neither cleared nor extended
    assert health.blocked(CRED, OTHER_MODEL, NOW) is None


@pytest.mark.parametrize(("status", "retry_after"), [(429, 20), (429, None), (401, None), (403, None),
                                                      (404, None), (500, None)])
def test_blocks_expire_at_until(health, status, retry_after):
    block = health.observe(CRED, MODEL, status, retry_after, NOW)
    assert health.blocked(CRED, MODEL, block.until - 0.001) is not None
    assert health.blocked(CRED, MODEL, block.until) is None
    assert health.blocked(CRED, MODEL, block.until + 1_000) is None


def test_server_error_does_not_shorten_a_rate_limit_cooldown(health):
    health.observe(CRED, MODEL, 429, 60, NOW)
    health.observe(CRED, MODEL, 503, None, NOW + 1)
    assert health.blocked(CRED, MODEL, NOW + 30) is not None


def test_a_probe_can_lift_suspensions_and_server_error_cooldowns_but_not_rate_limits(health):
    import math
    health.observe(CRED, MODEL, 401, None, NOW)
    health.observe(OTHER_CRED, MODEL, 503, None, NOW)
    health.observe(OTHER_CRED, OTHER_MODEL, 429, 60, NOW)
    health.suspend("login-1", "refresh refused", math.inf)  # only a new login brings it back
    assert health.probe_targets(NOW + 1) == {CRED, OTHER_CRED}
    health.recovered(CRED)
    health.recovered(OTHER_CRED)
    assert health.blocked(CRED, MODEL, NOW + 1) is None and health.blocked(OTHER_CRED, MODEL, NOW + 1) is None
    assert health.blocked(OTHER_CRED, OTHER_MODEL, NOW + 1) is not None  # the provider said when it ends
    assert health.probe_targets(NOW + 1) == set()
    health.recovered("login-1")
    assert health.blocked("login-1", MODEL, NOW + 1) is not None
