"""Integration tests: real parts started by the test itself (servers on loopback, redis-server, processes), with
no gateway stack around them. Waits are on what the test can observe, never on the wall clock."""

from __future__ import annotations

from tests.fake_copilot import copilot, fresh_copilot  # noqa: F401  (fixtures of the Copilot modules)
from tests.fixtures import builtin_data_parsed_once, clock  # noqa: F401  (fixtures, shared with the unit tests)
