"""The console's Accounts page through Envoy, as a browser's requests make it (httpx, a session from the admin
token): a Claude login by pasted code and a Codex login by device code against the fake OAuth server, each taken
by whichever worker Envoy picks, the login's windows, removal; never a token in a page."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.test_device_logins import device_config
from tests.e2e.test_logins import ADMIN, CHAT, no_token_in
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually


@pytest.fixture(autouse=True)
def quick_polls(oauth: FakeOAuth) -> Iterator[None]:
    interval, oauth.device_interval = oauth.device_interval, 0.05
    yield
    oauth.device_interval = interval


class Browser:
    """A signed-in console session: the cookie the sign-in set, the CSRF token its pages carry."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60, follow_redirects=True)
        signed = self.http.post("/console/login", data={"token": ADMIN}, follow_redirects=True)
        assert signed.status_code == 200, signed.text
        self.csrf = field(signed.text, "csrf")
        self.pages: list[str] = []

    def get(self, path: str) -> httpx.Response:
        return self._seen(self.http.get(path))

    def post(self, path: str, **data: str) -> httpx.Response:
        return self._seen(self.http.post(path, data={"csrf": self.csrf, **data}))

    def upload(self, path: str, kind: str, content: bytes) -> httpx.Response:
        return self._seen(self.http.post(path, data={"csrf": self.csrf, "kind": kind},
                                         files={"file": ("login.json", content)}))

    def _seen(self, response: httpx.Response) -> httpx.Response:
        self.pages.append(response.text)
        return response


def redirected(response: httpx.Response) -> bool:
    """A form that changed something answers 303 to the Accounts page (a reload then posts nothing again)."""
    return [r.status_code for r in response.history] == [303] and response.url.path == "/console/accounts"


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} in the page"
    return html.unescape(found.group(1))


def text_of(page: str, element: str) -> str:
    found = re.search(rf'id="{element}"[^>]*>([^<]*)<', page)
    assert found, f"no #{element} in the page"
    return html.unescape(found.group(1))


def link_of(page: str, element: str) -> str:
    found = re.search(rf'href="([^"]*)"[^>]*id="{element}"', page)
    assert found, f"no link #{element} in the page"
    return html.unescape(found.group(1))


def console_config(fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                   tmp_path: Path) -> dict[str, Any]:
    config = device_config(fakes, upstreams, oauth, tmp_path)
    config["auth"]["admin_token"] = ADMIN
    return config


def stored(tmp_path: Path) -> list[dict[str, Any]]:
    store = tmp_path / "accounts.json"
    return json.loads(store.read_text())["accounts"] if store.exists() else []  # type: ignore[no-any-return]


def test_a_claude_login_pasted_in_the_console_appears_with_its_windows_and_is_removed(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(console_config(fakes, upstreams, oauth, tmp_path))
    assert httpx.get(stack.url + "/console/accounts").status_code == 303  # no session: to the sign-in page
    browser = Browser(stack.url)
    assert "No logins yet" in browser.get("/console/accounts").text
    refused = browser.http.post("/console/accounts/login/claude", data={"csrf": "forged"})
    assert refused.status_code == 403

    step = browser.post("/console/accounts/login/claude")
    assert step.status_code == 200, step.text
    authorize = link_of(step.text, "authorize-link")
    assert authorize.startswith(oauth.base_url + "/authorize?") and "code_challenge=" in authorize
    pasted = httpx.get(authorize).headers["x-fake-code"]  # the provider's page shows code#state
    pending = field(step.text, "pending")
    wrong = browser.post("/console/accounts/login/claude/finish", pending=pending, pasted="code#another-state")
    assert wrong.status_code == 400 and "belongs to another login" in wrong.text
    done = browser.post("/console/accounts/login/claude/finish", pending=pending, pasted=pasted)
    assert done.status_code == 200 and redirected(done), done.text
    (account,) = stored(tmp_path)
    assert f"Logged in: {account['id']}" in done.text and account["kind"] == "claude"
    reloaded = browser.get("/console/accounts")  # the notice is shown once; the code is not posted again
    assert "Logged in" not in reloaded.text and f'data-account="{account["id"]}"' in reloaded.text

    resets = int(time.time()) + 3600
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-5-5",
                         "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    fakes["anthropic"].script(200, {"anthropic-ratelimit-unified-status": "allowed",
                                    "anthropic-ratelimit-unified-5h-utilization": "0.42",
                                    "anthropic-ratelimit-unified-5h-reset": str(resets),
                                    "anthropic-ratelimit-unified-7d-utilization": "0.12",
                                    "anthropic-ratelimit-unified-7d-reset": str(resets + 86400)}, answer)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    # Whichever worker shows the page knows the windows once the one that served the request stored them.
    def with_windows() -> str | None:
        page = browser.get("/console/accounts").text
        return page if "5h: 42% used" in page else None

    page = eventually(with_windows, "the Accounts page shows the login's 5h window")
    assert "7d: 12% used" in page and 'value="0.42"' in page and "active" in page

    removed = browser.post(f"/console/accounts/{account['id']}/remove")
    assert removed.status_code == 200 and redirected(removed) and f"Removed {account['id']}." in removed.text
    assert stored(tmp_path) == [] and f'data-account="{account["id"]}"' not in removed.text
    assert browser.post(f"/console/accounts/{account['id']}/remove").status_code == 404
    no_token_in("".join(browser.pages), oauth)


def test_a_codex_device_login_from_the_console_polls_until_approved(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(console_config(fakes, upstreams, oauth, tmp_path))
    browser = Browser(stack.url)
    step = browser.post("/console/accounts/device/codex")
    assert step.status_code == 200, step.text
    code = text_of(step.text, "user-code")
    assert link_of(step.text, "verification-link") == oauth.device_page
    handle = field(step.text, "id")
    waiting = browser.post("/console/accounts/device/codex/poll", id=handle)
    assert waiting.status_code == 200 and "Waiting for the approval" in waiting.text
    oauth.approve_device(code)

    def logged_in() -> httpx.Response | None:
        polled = browser.post("/console/accounts/device/codex/poll", id=field(waiting.text, "id"))
        return polled if "Logged in" in polled.text else None

    done = eventually(logged_in, "the device login finishes")
    (account,) = stored(tmp_path)
    assert f"Logged in: {account['id']}" in done.text and account["kind"] == "codex" and redirected(done)
    assert f'data-account="{account["id"]}"' in done.text
    forged = browser.post("/console/accounts/device/codex/poll", id="not-a-sealed-id")
    assert forged.status_code == 400

    # An upload of Claude Code's credentials file, as `extproc auth import claude=FILE` reads it from disk.
    grant = oauth.issue_tokens("claude-code")
    credentials = json.dumps({"claudeAiOauth": {"accessToken": grant["access_token"],
                                                "refreshToken": grant["refresh_token"],
                                                "expiresAt": int(time.time() + 3600) * 1000,
                                                "subscriptionType": "max"}}).encode()
    imported = browser.upload("/console/accounts/import", "claude", credentials)
    assert imported.status_code == 200 and redirected(imported) and "Imported claude-" in imported.text
    assert sorted(a["kind"] for a in stored(tmp_path)) == ["claude", "codex"]
    bad = browser.upload("/console/accounts/import", "codex", b"{}")
    assert bad.status_code == 400 and "has no tokens" in bad.text
    no_token_in("".join(browser.pages), oauth)
