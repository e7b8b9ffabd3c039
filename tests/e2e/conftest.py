"""Fixtures the login modules share: a fake OAuth server that knows the Gemini login's published client secret,
and the two backends logins reach (ChatGPT's Codex backend, which only streams, and Code Assist)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.config.data import builtin_flow_data
from tests.fake_copilot import copilot, fresh_copilot  # noqa: F401  (fixtures of the Copilot modules)
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeOAuth]:
    gemini = builtin_flow_data()["gemini"]
    server = FakeOAuth(client_secrets={gemini["client_id"]: gemini["client_secret"]})
    yield server
    server.close()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FakeProvider]]:
    servers = {"chatgpt": FakeProvider("chatgpt", stream_only=True), "codeassist": FakeProvider("codeassist")}
    yield servers
    for server in servers.values():
        server.close()
