"""No secret the suite used appears in any log line or error body the suite produced (see tests/secrets_registry.py).

It runs last (the root conftest.py orders it), so it reads what every other test of the session left: the stacks'
log files under pytest's basetemp, the gateway's log records in the test process, and every error body or event
stream a test's client read. The secrets are everything the fakes issued, the test clients sent, and the configs
and account stores held. A failure names the secret and where it was, never its value.
"""

from __future__ import annotations

import pytest

from tests import secrets_registry
from tests.conftest import SECRETS, STATE_KEY

REGISTRY = secrets_registry.REGISTRY


@pytest.mark.last
def test_no_secret_reached_a_log_line_or_an_error_body(request: pytest.FixtureRequest,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    before = request.session.items[: request.session.items.index(request.node)]
    assert before, "nothing ran before the scan: run it with the tests whose logs it reads"
    for name, value in SECRETS.items():
        secrets_registry.secret(f"{name} provider key", value)
    secrets_registry.secret("state key", STATE_KEY)
    secrets_registry.harvest(tmp_path_factory.getbasetemp())

    # What the session must have given the scan to read, so that it cannot pass by reading nothing: a log file per
    # module that started a stack, each with its start-up lines at least (its credentials, its address), and
    # something to read whatever ran.
    on_stacks = {item.nodeid.partition("::")[0] for item in before
                 if {"make_stack", "make_module_stack"} & set(getattr(item, "fixturenames", ()))}
    texts = list(REGISTRY.texts())
    lines = sum(text.count("\n") + 1 for _, text in texts if text)
    logs = [path for path in REGISTRY.log_files if path.is_file() and path.stat().st_size]
    assert len(logs) >= len(on_stacks), f"{len(on_stacks)} modules started stacks, but {len(logs)} logs were found"
    assert lines >= max(1, 3 * len(logs)), f"only {lines} lines to scan in {len(logs)} logs and the rest"
    assert len(REGISTRY.secrets) > len(SECRETS)

    leaked = secrets_registry.leaks(texts)
    assert not leaked, "secrets reached a log or an error body:\n" + "\n".join(
        f"  {name} in {where}" for name, where in sorted(set(leaked)))
    print(f"\nsecret scan: {len(REGISTRY.secrets)} secrets, {len(logs)} log files, {len(REGISTRY.bodies)} error "
          f"bodies and streams, {lines} lines, after {len(before)} tests")
