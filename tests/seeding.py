"""One seed for every random choice of a test run, shown in the header and the summary so a failure replays exactly.

`EXTPROC_TEST_SEED=<n>` (or Hypothesis' own `--hypothesis-seed=<n>`) runs the same examples again; without either,
each run draws its seed, so successive CI runs explore further. Every Hypothesis property takes it (Hypothesis'
plugin forces it), and so does any test that asks for the `run_seed` fixture.

Hypothesis profiles: `default` (Hypothesis' own), and `long` (`--hypothesis-profile=long`): 40 times the examples
for every property; the processor fuzz sends a number of streams in proportion.

Loaded with `-p tests.seeding` (pyproject's addopts) so that it runs before Hypothesis' plugin reads its options.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from hypothesis import settings

SEED_ENV = "EXTPROC_TEST_SEED"
LONG = "long"
_SEED = pytest.StashKey[int]()
_WORKER_KEY = "extproc_test_seed"

settings.register_profile(LONG, max_examples=40 * settings.get_profile("default").max_examples)


def _chosen(config: pytest.Config) -> int:
    given = config.getoption("hypothesis_seed", None) or os.environ.get(SEED_ENV)
    if given is None or given == "":
        return random.SystemRandom().randrange(2**32)
    try:
        return int(given)
    except ValueError:
        raise pytest.UsageError(f"{SEED_ENV} (or --hypothesis-seed) must be a whole number, got {given!r}") from None


@pytest.hookimpl(tryfirst=True)  # before Hypothesis' plugin takes the seed from its option
def pytest_configure(config: pytest.Config) -> None:
    handed = getattr(config, "workerinput", {}).get(_WORKER_KEY)  # a pytest-xdist worker: the run's seed
    seed = int(handed) if handed is not None else _chosen(config)
    config.stash[_SEED] = seed
    config.option.hypothesis_seed = str(seed)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist starts a worker: it takes the run's seed, so one seed replays every worker's tests."""
    node.workerinput[_WORKER_KEY] = node.config.stash[_SEED]


def _line(config: pytest.Config) -> str:
    seed = config.stash[_SEED]
    return f"test seed: {seed} (replay with {SEED_ENV}={seed})"


def pytest_report_header(config: pytest.Config) -> str:
    return _line(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Again at the end, next to any failure: with -q (make test) there is no header."""
    terminalreporter.write_line(_line(config))


@pytest.fixture(scope="session")
def run_seed(pytestconfig: pytest.Config) -> int:
    """The run's seed, for tests that draw at random outside Hypothesis."""
    return pytestconfig.stash[_SEED]
