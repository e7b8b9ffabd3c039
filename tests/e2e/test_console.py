"""The web console through real Envoy: sign-in with the admin token, sessions, CSRF, and that no page or answer
carries a secret. (The pages as a browser sees them: tests/browser/test_console.py.)"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests import secrets_registry
from tests.conftest import SECRETS, Stack, provider_config
from tests.fakes import FakeProvider

ADMIN = "console-admin-token-0123456789"
TEAM = "team-key-console-0123456789"
CHAT = [{"role": "user", "content": "hi"}]
CI_KEY = "ci-key-of-the-console-0123"  # given to the gateway by its sha256 only
CI_DIGEST = hashlib.sha256(CI_KEY.encode()).hexdigest()


def console_config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    return {"providers": provider_config(fakes), "discovery": False, "auth": {"admin_token": ADMIN},
            "clients": {"keys": [{"name": "team", "key": TEAM, "rpm": 50, "budget": {"usd": 10, "per": "month"}},
                                 {"name": "ci", "sha256": CI_DIGEST, "models": ["claude-*"]}],
                        "teams": {"platform": {"keys": ["team"], "tpm": 5000,
                                               "budget": {"usd": 40, "per": "week"}}}}}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(console_config(fakes))


@pytest.fixture
def browser(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, follow_redirects=False, timeout=10) as client:
        yield client


def sign_in(client: httpx.Client, token: str = ADMIN) -> httpx.Response:
    return client.post("/console/login", data={"token": token})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "a form with the session's CSRF token"
    return found.group(1)


def no_secret_in(*texts: tuple[str, str]) -> None:
    secrets_registry.secret("console admin token", ADMIN)
    secrets_registry.secret("console client key", TEAM)
    assert secrets_registry.leaks(list(texts)) == []


def test_without_a_session_every_page_sends_to_the_sign_in_page_and_the_api_answers_401(browser: httpx.Client) -> None:
    for path in ("/console/", "/console/models", "/console/keys", "/console/requests", "/console/accounts"):
        page = browser.get(path)
        assert page.status_code == 303 and page.headers["location"] == "/console/login", path
    assert browser.get("/console/api/series").status_code == 401
    assert browser.get("/console").headers["location"].endswith("/console/")  # Envoy's redirect to the console's root
    login = browser.get("/console/login")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert login.headers["cache-control"] == "no-store" and "frame-ancestors 'none'" in login.headers[
        "content-security-policy"]


def test_a_wrong_admin_token_gets_401_and_the_form_again_saying_so(browser: httpx.Client, stack: Stack) -> None:
    refused = sign_in(browser, ADMIN + "x")
    assert refused.status_code == 401 and "not this gateway's admin token" in refused.text
    assert "set-cookie" not in refused.headers and 'name="token"' in refused.text
    assert browser.get("/console/").status_code == 303
    stack.wait_log("console: a sign-in with a wrong admin token")


def test_signing_in_opens_every_page_and_none_shows_a_secret(browser: httpx.Client, stack: Stack) -> None:
    served = httpx.post(stack.url + "/v1/chat/completions", headers={"authorization": f"Bearer {TEAM}"},
                        json={"model": "gpt-5-mini", "messages": CHAT})
    assert served.status_code == 200
    signed = sign_in(browser)
    assert signed.status_code == 303 and signed.headers["location"] == "/console/"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; over https the cookie is Secure
    texts = [("sign-in answer", signed.text + str(signed.headers))]
    for path, expect in (("/console/", "Overview"), ("/console/models", "claude-haiku-5-5"),
                         ("/console/keys", "team"), ("/console/requests", "Requests")):
        page = browser.get(path)
        assert page.status_code == 200 and expect in page.text, path
        texts.append((path, page.text + str(page.headers)))
    keys = browser.get("/console/keys").text
    assert "of 50 per minute" in keys and "of $10.00 this month" in keys and "claude-*" in keys
    assert "(team platform)" in keys and "Team platform" in keys  # the key in its team, the team as a row
    assert "of 5,000 per minute" in keys and "of $40.00 this week" in keys
    assert CI_DIGEST[:8] not in keys  # a key's digest is not shown either
    assert browser.get("/console/login").headers["location"] == "/console/"  # signed in already
    no_secret_in(*texts)


def test_a_form_without_the_sessions_csrf_token_or_from_another_origin_is_refused(browser: httpx.Client) -> None:
    assert sign_in(browser).status_code == 303
    csrf = csrf_of(browser.get("/console/").text)
    assert browser.post("/console/logout", data={}).status_code == 403
    assert browser.post("/console/logout", data={"csrf": csrf + "x"}).status_code == 403
    other = browser.post("/console/logout", data={"csrf": csrf}, headers={"origin": "https://evil.example"})
    assert other.status_code == 403 and "nothing was done" in other.text
    assert browser.get("/console/").status_code == 200  # still signed in
    assert browser.post("/console/login", data={"token": ADMIN},
                        headers={"origin": "https://evil.example"}).status_code == 403
    out = browser.post("/console/logout", data={"csrf": csrf}, headers={"origin": str(browser.base_url).rstrip("/")})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert 'extproc_console=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]


def test_a_forged_or_expired_cookie_is_no_session(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, cookies={"extproc_console": "gAAAAAforged"}) as client:
        assert client.get("/console/").status_code == 303


def test_static_files_are_served_with_long_cache_headers(browser: httpx.Client) -> None:
    assert sign_in(browser).status_code == 303
    page = browser.get("/console/").text
    (htmx,) = re.findall(r'src="(/console/static/htmx\.min\.js\?v=[0-9a-f]+)"', page)
    answer = httpx.get(str(browser.base_url).rstrip("/") + htmx)  # no session needed
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
    assert "immutable" in answer.headers["cache-control"] and "htmx" in answer.text[:200]
    assert httpx.get(str(browser.base_url).rstrip("/") + "/console/static/nothing.js").status_code == 404


def test_only_envoy_reaches_the_console_on_the_relay_port(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """The relay's server holds the console; without the processor token Envoy presents, it refuses; and a console
    path it has no page for is the console's 404, never passed to a provider by the relay."""
    relay = yaml.safe_load(stack.config_path.read_text())["processor"]["relay_port"]
    assert httpx.get(f"http://127.0.0.1:{relay}/console/login").status_code == 403
    unknown = httpx.get(stack.url + "/console/nothing", headers={"x-extproc-provider": "openai"})
    assert unknown.status_code == 303  # no session: to the sign-in page, whatever the path
    with httpx.Client(base_url=stack.url) as client:
        assert sign_in(client).status_code == 303
        signed = client.get("/console/v1/chat/completions", headers={"x-extproc-provider": "openai"})
        assert signed.status_code == 404
    assert not fakes["openai"].requests


def test_without_an_admin_token_the_console_says_how_to_set_it(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = console_config(fakes)
    del config["auth"]["admin_token"]
    stack = make_stack(config)
    off = httpx.get(stack.url + "/console/")
    assert off.status_code == 403 and "auth.admin_token" in off.text
    assert httpx.post(stack.url + "/console/login", data={"token": ADMIN}).status_code == 403
    assert SECRETS["openai"] not in off.text
