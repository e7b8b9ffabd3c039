"""Device-code logins as a user makes them: `extproc auth login codex --device` in a terminal, and the REST API
through Envoy, against the fake OAuth server (its device endpoints answer at a short interval)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.test_cli import Terminal, assert_interrupted, terminals  # noqa: F401  (the fixture)
from tests.e2e.test_logins import ADMIN, login_config, no_token_in, write_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def quick_polls(oauth: FakeOAuth) -> Iterator[None]:
    """The fake asks for a poll every 50 ms instead of 5 s (it answers with the interval a client must keep)."""
    interval, oauth.device_interval = oauth.device_interval, 0.05
    yield
    oauth.device_interval = interval


def device_config(fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                  tmp_path: Path) -> dict[str, Any]:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    base = oauth.base_url
    config["oauth"]["codex"]["device"] = {
        "style": "openai", "code_url": f"{base}/api/accounts/deviceauth/usercode",
        "poll_url": f"{base}/api/accounts/deviceauth/token", "verify_url": oauth.device_page,
        "redirect_uri": oauth.device_redirect_uri}
    return config


def accounts(tmp_path: Path) -> list[dict[str, Any]]:
    store = tmp_path / "accounts.json"
    found: list[dict[str, Any]] = json.loads(store.read_text())["accounts"] if store.exists() else []
    return found


def user_code(line: str) -> str | None:
    marker = "enter the code: "
    return line.split(marker, 1)[1].strip() if marker in line else None


def test_auth_login_codex_device_prints_the_page_and_code_and_logs_in_once_approved(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    config = device_config(fakes, upstreams, oauth, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "extproc", "auth", "login", "codex", "--device", "--config",
                             str(write_config(tmp_path, config))], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "BROWSER": "false"})
    assert proc.stdout is not None
    shown = []
    for line in proc.stdout:
        shown.append(line)
        if (code := user_code(line)) is not None:
            break
    assert code is not None and oauth.device_page + "\n" in shown  # the page to open, on a line of its own
    pending = [d for d in oauth.device_logins() if d.user_code == code]
    assert pending and pending[0].state == "pending"
    oauth.approve_device(code)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    (account,) = accounts(tmp_path)
    assert f"logged in: {account['id']} (ChatGPT Plus/Pro (Codex), {oauth.email})" in out
    assert account["kind"] == "codex" and account["account_id"] == oauth.chatgpt_account_id
    assert pending[0].answers[-1] == "tokens"
    assert oauth.is_valid_access_token(account["access_token"])
    no_token_in("".join(shown) + out + err, oauth)


def test_ctrl_c_ends_a_device_login_while_it_waits(tmp_path: Path, fakes: dict[str, FakeProvider],
                                                   upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                                                   terminals: Callable[..., Terminal]) -> None:  # noqa: F811
    config = write_config(tmp_path, device_config(fakes, upstreams, oauth, tmp_path))
    terminal = terminals("auth", "login", "codex", "--device", "--config", str(config))
    terminal.wait_for("Waiting for the approval")
    assert_interrupted(terminal, "auth")
    assert accounts(tmp_path) == []


def test_device_login_api_over_http(tmp_path: Path, fakes: dict[str, FakeProvider],
                                    upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                                    make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = device_config(fakes, upstreams, oauth, tmp_path)
    config["auth"]["admin_token"] = ADMIN
    stack = make_stack(config)
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.post(stack.url + "/auth/logins/codex/device", json={}).status_code == 401

    started = httpx.post(stack.url + "/auth/logins/codex/device", json={}, headers=admin)
    assert started.status_code == 200, started.text
    login = started.json()
    assert login["verification_uri"] == oauth.device_page and login["interval"] == 1  # whole seconds, rounded up
    assert 890 <= login["expires_in"] <= 900
    (issued,) = [d for d in oauth.device_logins() if d.user_code == login["user_code"]]
    poll = stack.url + "/auth/logins/codex/device/poll"

    waiting = httpx.post(poll, json={"id": login["id"]}, headers=admin)
    assert waiting.status_code == 200 and waiting.json() == {"pending": True, "interval": 1, "id": login["id"]}
    assert httpx.post(poll, json={"id": login["id"]}).status_code == 401  # the admin token guards the poll too
    wrong = httpx.post(stack.url + "/auth/logins/claude/device/poll", json={"id": login["id"]}, headers=admin)
    assert wrong.status_code == 400 and "belongs to a codex login" in wrong.json()["message"]
    forged = httpx.post(poll, json={"id": login["id"][:-6] + "AAAAAA"}, headers=admin)
    assert forged.status_code == 400 and "not a device login" in forged.json()["message"]

    oauth.approve_device(login["user_code"])
    done = httpx.post(poll, json={"id": login["id"]}, headers=admin)
    assert done.status_code == 200, done.text
    account = done.json()["account"]
    assert account["login"] == "codex" and account["status"] == "active" and done.json()["pending"] is False
    assert [a["id"] for a in accounts(tmp_path)] == [account["id"]]
    assert issued.answers == ["pending", "tokens"]
    listed = httpx.get(stack.url + "/auth/accounts", headers=admin).json()["accounts"]
    assert [a["id"] for a in listed] == [account["id"]]
    no_token_in(started.text + waiting.text + done.text, oauth)

    no_device = httpx.post(stack.url + "/auth/logins/claude/device", json={}, headers=admin)
    assert no_device.status_code == 400 and "no device-code login" in no_device.json()["message"]
