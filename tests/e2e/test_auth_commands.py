"""`extproc auth refresh`, `logout` and `import` without arguments, as a user runs them (the real CLI against a
fake OAuth server), and the gateway's count of the login token refreshes it makes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from extproc.auth.imports import DEFAULT_PATHS
from extproc.config import load_settings
from tests.conftest import Stack
from tests.e2e.test_logins import cli, login_config, no_token_in, write_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually

FLOWS = load_settings(None).flows  # the logins' public client ids, as the CLI sends them
CHAT = [{"role": "user", "content": "hi"}]


def login_files(oauth: FakeOAuth, expires_in: float = 3600) -> dict[str, dict[str, Any]]:
    """Each CLI's own credential file, holding tokens the fake OAuth server issued (as if each CLI had logged in)."""
    codex, gemini, claude = (oauth.issue_tokens(FLOWS[kind].client_id) for kind in ("codex", "gemini", "claude"))
    expiry_ms = int((time.time() + expires_in) * 1000)
    return {
        "codex": {"OPENAI_API_KEY": None, "tokens": {"id_token": codex["id_token"], "access_token":
                  codex["access_token"], "refresh_token": codex["refresh_token"], "account_id": "acct-fake-123"}},
        "gemini": {"access_token": gemini["access_token"], "refresh_token": gemini["refresh_token"],
                   "scope": "cloud-platform", "token_type": "Bearer", "id_token": gemini["id_token"],
                   "expiry_date": expiry_ms},
        "claude": {"claudeAiOauth": {"accessToken": claude["access_token"], "refreshToken": claude["refresh_token"],
                                     "expiresAt": expiry_ms, "scopes": ["user:inference"],
                                     "subscriptionType": "max"}},
    }


def in_home(home: Path, kind: str) -> Path:
    """Where the CLI of `kind` keeps its login under a home directory (the import's default path)."""
    return home / DEFAULT_PATHS[kind].relative_to("~")


def accounts(store: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(store.read_text())["accounts"] if store.exists() else []
    return found


@pytest.fixture
def config(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider],
           oauth: FakeOAuth) -> Path:
    return write_config(tmp_path, login_config(fakes, upstreams, oauth, tmp_path / "accounts.json"))


def test_import_without_arguments_takes_every_login_file_found_in_home(
        tmp_path: Path, config: Path, oauth: FakeOAuth) -> None:
    store = tmp_path / "accounts.json"
    empty = tmp_path / "empty-home"
    empty.mkdir()
    result = cli(config, "import", env={"HOME": str(empty)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to import: no ~/.codex/auth.json")
    assert accounts(store) == []

    home = tmp_path / "home"
    files = login_files(oauth)
    for kind, doc in files.items():
        in_home(home, kind).parent.mkdir(parents=True, exist_ok=True)
        in_home(home, kind).write_text(json.dumps(doc))
    result = cli(config, "import", env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    imported = [line for line in result.stdout.splitlines() if line.startswith("imported: ")]
    assert len(imported) == 3
    for kind in files:
        assert any(f"from {in_home(home, kind)}" in line and f"{kind}-" in line for line in imported), result.stdout
    by_kind = {a["kind"]: a for a in accounts(store)}
    assert set(by_kind) == {"codex", "gemini", "claude"}
    assert by_kind["claude"]["access_token"] == files["claude"]["claudeAiOauth"]["accessToken"]
    assert by_kind["codex"]["account_id"] == "acct-fake-123" and by_kind["gemini"]["project_id"] == "fake-project-42"
    no_token_in(result.stdout + result.stderr, oauth)

    in_home(home, "codex").unlink()  # a file no longer there is skipped, not an error, when none was named
    again = cli(config, "import", env={"HOME": str(home)})
    assert again.returncode == 0, again.stderr
    assert sorted(line.split()[1].split("-")[0] for line in again.stdout.splitlines()) == ["claude", "gemini"]
    assert len(accounts(store)) == 3  # importing again replaces, never duplicates


def _import_claude(tmp_path: Path, config: Path, oauth: FakeOAuth, expires_in: float = 3600) -> dict[str, Any]:
    source = tmp_path / "claude.json"
    source.write_text(json.dumps(login_files(oauth, expires_in)["claude"]))
    result = cli(config, "import", f"claude={source}")
    assert result.returncode == 0, result.stderr
    (account,) = accounts(tmp_path / "accounts.json")
    return account


def test_refresh_gets_a_new_token_at_once_and_logout_removes_the_account(
        tmp_path: Path, config: Path, oauth: FakeOAuth) -> None:
    store = tmp_path / "accounts.json"
    before = _import_claude(tmp_path, config, oauth)
    calls = oauth.refresh_calls

    refreshed = cli(config, "refresh", before["id"])
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith(f"refreshed: {before['id']} (expires ")
    after = accounts(store)[0]
    assert oauth.refresh_calls == calls + 1
    assert after["access_token"] != before["access_token"] and oauth.is_valid_access_token(after["access_token"])
    assert after["refresh_token"] != before["refresh_token"]  # rotated, and the new pair kept
    no_token_in(refreshed.stdout + refreshed.stderr, oauth)

    unknown = cli(config, "refresh", "claude-nobody")
    assert unknown.returncode == 1 and "claude-nobody" in unknown.stderr
    assert oauth.refresh_calls == calls + 1

    out = cli(config, "logout", before["id"])
    assert out.returncode == 0 and out.stdout.strip() == f"logged out: {before['id']}"
    assert accounts(store) == []
    assert cli(config, "list").stdout.startswith("no accounts")
    again = cli(config, "logout", before["id"])
    assert again.returncode == 1 and f"no account {before['id']}" in again.stderr


def _refreshes(stack: Stack, result: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(httpx.get(stack.metrics_url).text)
               for s in family.samples if s.name == "extproc_token_refreshes_total" and s.labels["result"] == result)


def test_the_gateway_counts_its_token_refreshes_by_result(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json", translation=False)
    _import_claude(tmp_path, write_config(tmp_path, config), oauth, expires_in=-60)  # expired: refreshed at first use
    stack = make_stack(config)
    assert (_refreshes(stack, "ok"), _refreshes(stack, "refused")) == (0, 0)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    eventually(lambda: _refreshes(stack, "ok") == 1, "the refresh before the first request is counted ok")
    assert oauth.is_valid_access_token(fakes["anthropic"].requests[-1].headers["authorization"].split()[1])

    oauth.revoke_refresh_tokens()  # the user revoked the app: the next refresh is refused for good
    fakes["anthropic"].script(401)  # and the provider refuses the token, which sends the login to a refresh
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code != 200
    eventually(lambda: _refreshes(stack, "refused") == 1, "the refused refresh is counted")
    assert _refreshes(stack, "ok") == 1 and _refreshes(stack, "failed") == 0
