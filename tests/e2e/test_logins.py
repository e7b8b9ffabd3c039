"""Subscription logins end to end: CLI login against a fake OAuth server, the token reaching a fake
provider through Envoy, refresh (single-flight, rotating), suspension and fallback, imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from extproc.config import load_settings
from tests import fakes as fakes_module
from tests.conftest import SECRETS, Stack, provider_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually

ROOT = Path(__file__).resolve().parents[2]
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _reset_upstreams(upstreams: dict[str, FakeProvider]) -> None:
    for server in upstreams.values():
        server.reset()


def login_config(fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                 store: Path, **extra: Any) -> dict[str, Any]:
    """Every login pointed at the fake OAuth server; anthropic, openai and gemini without API keys."""
    base = oauth.base_url
    providers = provider_config(fakes, without=("anthropic", "openai", "gemini"))
    providers["chatgpt"] = {"base_url": upstreams["chatgpt"].base_url}
    providers["codeassist"] = {"base_url": upstreams["codeassist"].base_url}
    hosted = {"hosted": "https://hosted.example/oauth/code/callback"}
    return {
        "providers": providers,
        "discovery": False,
        "auth": {"store": str(store), "refresh_skew": 0},
        "oauth": {
            # These tests are about logins, not about who may use them: any client's request may go on Claude's.
            "claude": {"authorize_url": f"{base}/authorize", "token_url": f"{base}/v1/oauth/token", "redirect": hosted,
                       "other_clients": "send"},
            "console": {"authorize_url": f"{base}/authorize", "token_url": f"{base}/v1/oauth/token",
                        "redirect": hosted, "create_api_key_url": f"{base}/api/oauth/claude_cli/create_api_key"},
            "gemini": {"authorize_url": f"{base}/o/oauth2/v2/auth", "token_url": f"{base}/token",
                       "userinfo_url": f"{base}/oauth2/v2/userinfo", "code_assist_url": base,
                       "redirect": {"loopback_port": 0, "loopback_path": "/oauth2callback"}},
            "codex": {"authorize_url": f"{base}/oauth/authorize", "token_url": f"{base}/oauth/token",
                      "redirect": {"loopback_port": 0, "loopback_path": "/auth/callback"}},
        },
        **extra,
    }


def write_config(tmp: Path, config: dict[str, Any]) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(config: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extproc", "auth", *args, "--config", str(config)],
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def login_by_paste(config: Path, flow: str) -> str:
    """`extproc auth login FLOW --no-browser`; the test plays the user: opens the URL, pastes code#state."""
    proc = subprocess.Popen([sys.executable, "-m", "extproc", "auth", "login", flow, "--no-browser",
                             "--config", str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    url = next(line.strip() for line in proc.stdout if line.startswith("http"))
    page = httpx.get(url)
    assert page.status_code == 200, page.text
    out, err = proc.communicate(page.headers["x-fake-code"] + "\n", timeout=30)
    assert proc.returncode == 0, err
    return out


def login_by_browser(config: Path, flow: str) -> str:
    """The browser step: a 'browser' that follows the authorize redirect to the CLI's loopback listener."""
    browser = f"{sys.executable} {ROOT / 'tests' / 'browser.py'} %s"
    result = cli(config, "login", flow, env={"BROWSER": browser})
    assert result.returncode == 0, result.stderr
    return result.stdout


def no_token_in(text: str, oauth: FakeOAuth) -> None:
    leaked = [t for t in oauth.issued_secrets() if t in text]
    assert not leaked, "a token or key appeared in output"


BILLING = "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;"
CLAUDE_CODE_BETAS = "interleaved-thinking-2025-05-14,context-management-2025-06-27,claude-code-20250219"


def claude_code_body(model: str) -> bytes:
    """A request in Claude Code's shape, written as bytes with spacing of its own: the billing block first."""
    return (b'{"model": "' + model.encode() + b'", "max_tokens": 10,\n "system": [{"type": "text", "text": "'
            + BILLING.encode() + b'"}, {"type": "text", "text": "You are Claude Code."}],\n'
            b' "metadata": {"user_id": "{\\"device_id\\":\\"d1\\",\\"session_id\\":\\"s1\\"}"},\n'
            b' "messages": [{"role": "user", "content": "hi"}]}')


def test_claude_login_serves_claude_codes_own_request_as_it_was_sent_and_no_other_clients(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    store = tmp_path / "accounts.json"
    config = login_config(fakes, upstreams, oauth, store)
    config["oauth"]["claude"]["other_clients"] = "refuse"  # the default
    out = login_by_paste(write_config(tmp_path, config), "claude")
    assert out.startswith("logged in: claude-")
    authorize = oauth.authorize_requests[-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["code"] == "true"
    assert "user:sessions:claude_code" in authorize["scope"].split()  # the scopes Claude Code asks for today
    assert "code_verifier" not in authorize  # the verifier never goes to the browser
    assert oct(store.stat().st_mode & 0o777) == "0o600" and oct(store.parent.stat().st_mode & 0o777) == "0o700"
    no_token_in(out, oauth)

    stack = make_stack(config)
    body = claude_code_body("claude-sonnet-5-5")
    sent_headers = {"content-type": "application/json", "x-api-key": "client-key", "x-app": "cli",
                    "anthropic-version": "2023-06-01", "anthropic-beta": CLAUDE_CODE_BETAS,
                    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)", "x-claude-code-session-id": "s1"}
    answer = httpx.post(f"{stack.url}/v1/messages?beta=true", content=body, headers=sent_headers, timeout=30)
    assert answer.status_code == 200, answer.text
    seen = fakes["anthropic"].wait_for(1)[0]
    assert seen.body == body and seen.path == "/v1/messages?beta=true"  # the body byte for byte, as sent
    assert oauth.is_valid_access_token(seen.headers["authorization"].removeprefix("Bearer "))
    assert "x-api-key" not in seen.headers  # the client's key never leaves
    assert seen.headers["anthropic-beta"] == CLAUDE_CODE_BETAS + ",oauth-2025-04-20"  # its own, then the login's
    for name in ("x-app", "user-agent", "x-claude-code-session-id", "anthropic-version"):
        assert seen.headers[name] == sent_headers[name]

    # Another client's request: the login is no candidate for it, and the client is told which setting to change
    client = anthropic.Anthropic(base_url=stack.url, api_key="client-key", max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        client.messages.create(model="claude-sonnet-5-5", max_tokens=10, messages=CHAT,  # type: ignore[arg-type]
                               system="Be brief.")
    assert refused.value.status_code == 403 and refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "oauth.claude.other_clients: send" in refused.value.message and "Claude Code" in refused.value.message
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="oauth.claude.other_clients"):
        oa.chat.completions.create(model="claude-sonnet-5-5", messages=CHAT)  # type: ignore[arg-type]
    assert len(fakes["anthropic"].requests) == 1  # nothing more went upstream

    # Anthropic's refusal to bill a request to the plan: the client hears it in its own envelope, the login stays
    extra_usage = (b'{"type":"error","error":{"type":"invalid_request_error","message":"Third-party apps now draw '
                   b'from your extra usage, not your plan limits. Add more at claude.ai/settings/usage and keep '
                   b'going."}}')
    fakes["anthropic"].script(400, {"content-type": "application/json"}, extra_usage)
    again = httpx.post(f"{stack.url}/v1/messages", content=body, headers=sent_headers, timeout=30)
    assert again.status_code == 400 and "extra usage" in again.json()["error"]["message"]
    assert again.json()["type"] == "error"
    served = httpx.post(f"{stack.url}/v1/messages", content=body, headers=sent_headers, timeout=30)
    assert served.status_code == 200 and len(fakes["anthropic"].requests) == 3  # neither cooled nor suspended
    listed = cli(write_config(tmp_path, config), "list")
    assert "claude-" in listed.stdout and "active" in listed.stdout
    no_token_in(listed.stdout + stack.logs(), oauth)


def test_codex_login_by_browser_routes_to_chatgpt_backend(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    # Another model may serve a request whose answer failed (the login's models are candidates for each other):
    # a collected stream cut midway is failed over to one.
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json", strategy="capability-match")
    out = login_by_browser(write_config(tmp_path, config), "codex")
    assert "\nlogged in: codex-" in out
    stack = make_stack(config)
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    oa.responses.create(model="gpt-6-luna", input="hi")
    seen = upstreams["chatgpt"].wait_for(1)[0]
    assert seen.path == "/backend-api/codex/responses"
    assert seen.headers["chatgpt-account-id"] == "acct-fake-123"
    assert oauth.is_valid_access_token(seen.headers["authorization"].removeprefix("Bearer "))
    # The ChatGPT backend takes no Chat Completions: the request is translated into the Responses API for it.
    raw = oa.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert raw.headers["x-extproc-route"] == "direct; translated chat->responses"
    assert raw.headers["x-extproc-provider"] == "chatgpt" and raw.parse().choices[0].message.content
    translated = upstreams["chatgpt"].wait_for(2)[1]
    assert translated.path == "/backend-api/codex/responses" and translated.json()["input"][0]["role"] == "user"
    assert translated.json()["stream"] is True  # the backend only streams: the answer was collected for the client
    chunks = oa.chat.completions.create(model="gpt-6-luna", messages=CHAT, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from gpt-6-luna"
    # The backend's stream cut midway: the whole answer was being collected, so Envoy fails that attempt over.
    upstreams["chatgpt"].script(200, {"content-type": "text/event-stream"},
                                fakes_module.responses_stream("gpt-6-luna"), cut_after=3)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert int(raw.headers["x-extproc-attempts"]) >= 2 and raw.parse().choices[0].message.content
    # The backend's own failure event: a client that wanted a whole answer gets an error, never a partial one
    failed = (b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_f"}}\n\n'
              b'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_f","status":"failed",'
              b'"error":{"code":"server_error","message":"the backend gave up"}}}\n\n')
    # (a 502 to Envoy: each candidate is tried, and the client hears the failure when none is left)
    upstreams["chatgpt"].script(200, {"content-type": "text/event-stream"}, failed, times=12)
    with pytest.raises(openai.APIStatusError) as cut:
        oa.chat.completions.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert cut.value.status_code == 502 and "the backend gave up" in cut.value.message
    no_token_in(out + stack.logs(), oauth)


def test_a_collected_stream_cut_with_nothing_to_fail_over_to_says_so(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """The processor's own 502 (the backend's stream cut while it was collected, no other candidate under the
    default strategy) reaches the client in its words, never Envoy's "could not reach its processor"."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    out = login_by_browser(write_config(tmp_path, config), "codex")
    stack = make_stack(config)
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    upstreams["chatgpt"].script(200, {"content-type": "text/event-stream"},
                                fakes_module.responses_stream("gpt-6-luna"), cut_after=3, times=12)
    with pytest.raises(openai.APIStatusError) as cut:
        oa.chat.completions.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert cut.value.status_code == 502
    error = cut.value.body if isinstance(cut.value.body, dict) else {}
    assert error.get("code") == "answer_cut", cut.value.body
    assert "Provider chatgpt's answer was cut off" in cut.value.message
    no_token_in(out + stack.logs(), oauth)


def test_gemini_login_wraps_for_code_assist_and_unwraps_answers(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    out = login_by_browser(write_config(tmp_path, config), "gemini")
    assert "\nlogged in: gemini-" in out and "user@example.com" in out
    assert [c.path for c in oauth.calls][-2:] == ["/v1internal:loadCodeAssist", "/v1internal:onboardUser"]
    stack = make_stack(config)
    client = genai.Client(api_key="client-key",
                          http_options=genai_types.HttpOptions(base_url=stack.url, api_version="v1beta"))
    assert client.models.generate_content(model="gemini-3.8-flash", contents="hi").text == "hello from gemini-3.8-flash"
    seen = upstreams["codeassist"].wait_for(1)[0]
    assert seen.path == "/v1internal:generateContent"
    body = seen.json()
    assert body["model"] == "gemini-3.8-flash" and body["project"] == "fake-project-42"
    assert body["request"]["contents"][0]["parts"][0]["text"] == "hi"
    streamed = "".join(chunk.text or "" for chunk in client.models.generate_content_stream(
        model="gemini-3.8-flash", contents="hi"))
    assert streamed == "hello from gemini-3.8-flash"
    assert upstreams["codeassist"].wait_for(2)[1].path == "/v1internal:streamGenerateContent?alt=sse"


def test_a_personal_google_account_code_assist_refuses_is_told_what_works_at_login_and_at_first_use(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    store = tmp_path / "accounts.json"
    config = login_config(fakes, upstreams, oauth, store)
    oauth.unsupported_client = True
    try:
        browser = f"{sys.executable} {ROOT / 'tests' / 'browser.py'} %s"
        refused = cli(write_config(tmp_path, config), "login", "gemini", env={"BROWSER": browser})
        assert refused.returncode == 1 and "UNSUPPORTED_CLIENT" in refused.stderr
        assert "Standard or Enterprise licence" in refused.stderr and "oauth.gemini.project" in refused.stderr
        assert not store.exists() or "gemini-" not in store.read_text()  # nothing half made is kept

        # A login kept from before (no project): its first use asks Code Assist, which refuses it the same way
        issued = oauth.issue_tokens(load_settings(None).flows["gemini"].client_id)
        store.write_text(json.dumps({"version": 1, "accounts": [{
            "id": "gemini-old", "kind": "gemini", "email": "me@gmail.com", "access_token": issued["access_token"],
            "refresh_token": issued["refresh_token"], "expires_at": time.time() + 3600}]}))
        store.chmod(0o600)
        stack = make_stack(config)
        client = genai.Client(api_key="client-key",
                              http_options=genai_types.HttpOptions(base_url=stack.url, api_version="v1beta"))
        with pytest.raises(genai_errors.APIError) as first_use:
            client.models.generate_content(model="gemini-3.8-flash", contents="hi")
        said = str(first_use.value)
        assert first_use.value.code == 503 and "UNSUPPORTED_CLIENT" in said and "oauth.gemini.project" in said
        assert not upstreams["codeassist"].requests  # nothing went to Code Assist on the refused login
        listed = cli(write_config(tmp_path, config), "list").stdout
        assert "gemini-old" in listed and "suspended" in listed and "UNSUPPORTED_CLIENT" in listed

        # A licensed account naming its project logs in and is served as before
        config["oauth"]["gemini"]["project"] = "licensed-project"
        out = login_by_browser(write_config(tmp_path, config), "gemini")
        assert "\nlogged in: gemini-" in out
    finally:
        oauth.unsupported_client = False


def test_console_login_creates_and_uses_an_api_key(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    login_by_paste(write_config(tmp_path, config), "console")
    key = oauth.created_api_keys[-1]
    stack = make_stack(config)
    httpx.post(stack.url + "/v1/messages", json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT})
    seen = fakes["anthropic"].wait_for(1)[0]
    assert seen.headers["x-api-key"] == key and "authorization" not in seen.headers
    no_token_in(stack.logs(), oauth)


def test_expiry_means_one_refresh_for_fifty_concurrent_requests(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    logged_in = short_login(tmp_path, config, oauth)
    stack = make_stack(config)
    first_token = json.loads((tmp_path / "accounts.json").read_text())["accounts"][0]["access_token"]
    until_expired(logged_in)
    calls_before, oauth.refresh_delay = oauth.refresh_calls, 0.5

    def ask(_: int) -> int:
        return httpx.post(stack.url + "/v1/messages", timeout=30,
                          json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}).status_code

    try:
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(ask, range(50)))
    finally:
        oauth.refresh_delay = 0
    assert statuses == [200] * 50
    assert oauth.refresh_calls - calls_before == 1
    tokens = {r.headers["authorization"] for r in fakes["anthropic"].wait_for(50)}
    assert tokens == {f"Bearer {oauth.latest_access_token}"} and first_token not in str(tokens)
    stored = json.loads((tmp_path / "accounts.json").read_text())["accounts"][0]
    assert stored["access_token"] == oauth.latest_access_token  # the rotated pair was persisted
    no_token_in(stack.logs(), oauth)


SHORT_LIFE = 1.0  # s a short login's token lives: expired by the time a stack has started, or soon after


def routes_held(stack: Stack) -> str:
    """The routes Envoy holds now, as its admin shows them (a fast route carries a login's current token)."""
    return httpx.get(stack.admin_url + "/config_dump", params={"resource": "dynamic_route_configs"}).text


def short_login(tmp_path: Path, config: dict[str, Any], oauth: FakeOAuth) -> float:
    """A Claude login whose token lives SHORT_LIFE; when the login was done (its token was issued before)."""
    oauth.expires_in = int(SHORT_LIFE)
    try:
        login_by_paste(write_config(tmp_path, config), "claude")
    finally:
        oauth.expires_in = 3600
    return time.time()


def until_expired(logged_in: float) -> None:
    """Until the token of a login done at `logged_in` has expired: a deadline known in advance, not a guess."""
    eventually(lambda: time.time() > logged_in + SHORT_LIFE, "the login's token expires")


def with_anthropic_key(config: dict[str, Any], fakes: dict[str, FakeProvider], **extra: str) -> None:
    """Give the config's anthropic provider an API key beside its logins (with these provider fields)."""
    config["providers"]["anthropic"] = {"base_url": fakes["anthropic"].base_url, "api_key": SECRETS["anthropic"],
                                        **extra}


@pytest.fixture
def claude_stack(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider],
                 oauth: FakeOAuth, make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """A gateway whose only Anthropic credential is a fresh Claude login (and no other API serves it)."""
    config = {**login_config(fakes, upstreams, oauth, tmp_path / "accounts.json"), "translation": False}
    login_by_paste(write_config(tmp_path, config), "claude")
    return make_stack(config)


def test_a_401_on_a_login_is_refreshed_and_retried_on_the_same_login_in_the_same_request(
        claude_stack: Stack, fakes: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    stack = claude_stack
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    fakes["anthropic"].script(401)
    calls = oauth.refresh_calls
    answer = client.messages.with_raw_response.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    assert answer.http_response.status_code == 200 and answer.parse().content
    assert oauth.refresh_calls == calls + 1
    first, second = fakes["anthropic"].wait_for(2)
    refreshed = second.headers["authorization"] == f"Bearer {oauth.latest_access_token}"
    assert refreshed and first.headers["authorization"] != second.headers["authorization"], "the retry's token"
    assert json.loads(first.body) == json.loads(second.body)
    assert not {"x-extproc-login", "x-envoy-attempt-count"} & {*first.headers, *second.headers}
    stack.wait_log("retried with a refreshed one")
    # The new token was taken: the next request uses it with no refresh, and a later 401 is refreshed again.
    assert httpx.post(stack.url + "/v1/messages", json={"model": "claude-haiku-5-5", "max_tokens": 5,
                                                        "messages": CHAT}).status_code == 200
    assert oauth.refresh_calls == calls + 1
    kept = fakes["anthropic"].wait_for(3)[2].headers["authorization"] == second.headers["authorization"]
    assert kept, "the next request went with another token than the refreshed one"


def test_a_token_refused_again_after_its_refresh_suspends_the_login(
        claude_stack: Stack, fakes: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    """An upstream that refuses every token must cost one refresh, not one per request."""
    stack = claude_stack
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    fakes["anthropic"].script(401, times=2)
    calls = oauth.refresh_calls
    statuses = [httpx.post(stack.url + "/v1/messages", json=body).status_code]
    stack.wait_log("suspended until")
    statuses += [httpx.post(stack.url + "/v1/messages", json=body).status_code for _ in range(2)]
    assert statuses == [401, 503, 503]
    assert oauth.refresh_calls == calls + 1 and len(fakes["anthropic"].requests) == 2


def test_a_401_on_an_api_key_is_not_retried(make_stack: Callable[[dict[str, Any]], Stack],
                                            fakes: dict[str, FakeProvider]) -> None:
    stack = make_stack({"providers": provider_config(fakes), "discovery": False})
    fakes["anthropic"].script(401)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 401
    assert len(fakes["anthropic"].requests) == 1


def test_reused_refresh_token_suspends_the_login_and_the_request_falls_back(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    with_anthropic_key(config, fakes, prefer="login")
    logged_in = short_login(tmp_path, config, oauth)
    stored = json.loads((tmp_path / "accounts.json").read_text())["accounts"][0]
    # Someone else used the refresh token (another tool sharing the login): it is now spent.
    assert httpx.post(f"{oauth.base_url}/v1/oauth/token", json={
        "grant_type": "refresh_token", "refresh_token": stored["refresh_token"],
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"}).status_code == 200
    until_expired(logged_in)
    stack = make_stack(config)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    for _ in range(3):
        response = httpx.post(stack.url + "/v1/messages", json=body)
        assert response.status_code == 200
    calls = oauth.refresh_calls
    assert all(r.headers.get("x-api-key") == SECRETS["anthropic"] for r in fakes["anthropic"].wait_for(3))
    assert oauth.refresh_calls == calls  # suspended: no refresh loop
    listed = cli(write_config(tmp_path, config), "list").stdout
    assert "suspended" in listed and "refresh_token_reused" in listed
    models = {m["id"]: m for m in httpx.get(stack.url + "/v1/models").json()["data"]}
    assert models["claude-haiku-5-5"]["available"] is True and models["claude-haiku-5-5"]["credentials"] == 2


def test_imports_take_each_existing_login_format(tmp_path: Path, fakes: dict[str, FakeProvider],
                                                  upstreams: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    config = write_config(tmp_path, login_config(fakes, upstreams, oauth, tmp_path / "accounts.json"))
    codex = oauth.issue_tokens("app_EMoamEEZ73f0CkXaXp7hrann")
    gemini = oauth.issue_tokens("681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com")
    claude = oauth.issue_tokens("9d1c250a-e61b-44d9-88ed-5944d1962f5e")
    files = {
        "codex": {"OPENAI_API_KEY": None, "tokens": {"id_token": codex["id_token"], "access_token":
                  codex["access_token"], "refresh_token": codex["refresh_token"], "account_id": "acct-fake-123"},
                  "last_refresh": "2026-11-25T00:00:00Z"},
        "gemini": {"access_token": gemini["access_token"], "refresh_token": gemini["refresh_token"],
                   "scope": "cloud-platform", "token_type": "Bearer", "id_token": gemini["id_token"],
                   "expiry_date": int((time.time() + 3600) * 1000)},
        "claude": {"claudeAiOauth": {"accessToken": claude["access_token"], "refreshToken": claude["refresh_token"],
                                     "expiresAt": int((time.time() + 3600) * 1000), "scopes": ["user:inference"],
                                     "subscriptionType": "max"}},
    }
    args = []
    for kind, doc in files.items():
        (tmp_path / f"{kind}.json").write_text(json.dumps(doc))
        args.append(f"{kind}={tmp_path / f'{kind}.json'}")
    result = cli(config, "import", *args)
    assert result.returncode == 0, result.stderr
    again = cli(config, "import", *args)  # importing twice replaces, never duplicates
    assert again.returncode == 0
    accounts = json.loads((tmp_path / "accounts.json").read_text())["accounts"]
    by_kind = {a["kind"]: a for a in accounts}
    assert len(accounts) == 3 and set(by_kind) == {"codex", "gemini", "claude"}
    assert by_kind["codex"]["account_id"] == "acct-fake-123"
    assert by_kind["gemini"]["project_id"] == "fake-project-42" and by_kind["gemini"]["email"] == "user@example.com"
    assert by_kind["claude"]["plan"] == "max"
    listed = cli(config, "list")
    for kind in ("codex", "gemini", "claude"):
        assert f"{kind}-" in listed.stdout
    no_token_in(result.stdout + result.stderr + listed.stdout, oauth)


def test_replayed_state_and_wrong_code_are_refused(tmp_path: Path, fakes: dict[str, FakeProvider],
                                                   upstreams: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    config = write_config(tmp_path, login_config(fakes, upstreams, oauth, tmp_path / "accounts.json"))
    result = cli(config, "login", "claude", "--no-browser", stdin="not-a-real-code#not-the-state\n")
    assert result.returncode == 1 and "matches no login in progress" in result.stderr
    assert not (tmp_path / "accounts.json").exists()


ADMIN = "admin-token-for-tests-0123456789"


def test_login_api_over_http(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider],
                             oauth: FakeOAuth, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    config["auth"]["admin_token"] = ADMIN
    config["translation"] = False  # without its login, an Anthropic request has nothing in its own API
    stack = make_stack(config)
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert httpx.get(stack.url + "/auth/accounts").status_code == 401
    assert httpx.get(stack.url + "/auth/accounts", headers={"authorization": "Bearer wrong"}).status_code == 401

    started = httpx.post(stack.url + "/auth/logins/claude", json={}, headers={"authorization": f"bearer {ADMIN}"})
    assert started.status_code == 200  # the scheme is case-insensitive
    started = started.json()
    assert started["redirect_uri"] == "https://hosted.example/oauth/code/callback"
    pasted = httpx.get(started["authorize_url"]).headers["x-fake-code"]
    wrong_kind = httpx.post(stack.url + "/auth/logins/gemini/finish", json={"pasted": pasted}, headers=admin)
    assert wrong_kind.status_code == 400 and "belongs to a claude login" in wrong_kind.json()["message"]
    started = httpx.post(stack.url + "/auth/logins/claude", json={}, headers=admin).json()
    pasted = httpx.get(started["authorize_url"]).headers["x-fake-code"]
    finished = httpx.post(stack.url + "/auth/logins/claude/finish", json={"pasted": pasted}, headers=admin)
    assert finished.status_code == 200, finished.text
    account = finished.json()
    assert account["login"] == "claude" and account["provider"] == "anthropic" and account["status"] == "active"
    again = httpx.post(stack.url + "/auth/logins/claude/finish", json={"pasted": pasted}, headers=admin)
    assert again.status_code == 400 and "already used" in again.json()["message"]  # the state works once

    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    first = fakes["anthropic"].wait_for(1)[0].headers["authorization"]
    refreshed = httpx.post(f"{stack.url}/auth/accounts/{account['id']}/refresh", headers=admin)
    assert refreshed.status_code == 200
    # A fast route may carry the login's token: Envoy drops the old one when it reads the routes file again.
    eventually(lambda: first.removeprefix("Bearer ") not in routes_held(stack), "Envoy drops the old token")
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    second = fakes["anthropic"].wait_for(2)[1].headers["authorization"]
    assert first != second == f"Bearer {oauth.latest_access_token}"

    listed = httpx.get(stack.url + "/auth/accounts", headers=admin)
    assert [a["id"] for a in listed.json()["accounts"]] == [account["id"]]
    assert not [h for h in listed.headers if h.startswith("grpc-")]
    no_token_in(listed.text + finished.text + refreshed.text, oauth)

    assert httpx.delete(f"{stack.url}/auth/accounts/{account['id']}", headers=admin).json() == {"removed": True}
    assert httpx.delete(f"{stack.url}/auth/accounts/{account['id']}", headers=admin).status_code == 404
    eventually(lambda: not stack.fast_routes(), "Envoy drops the removed login's fast route")
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 503  # no credential left


def test_browser_callback_to_the_gateway(tmp_path: Path, fakes: dict[str, FakeProvider],
                                         upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                                         make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    config["auth"]["admin_token"] = ADMIN
    stack = make_stack(config)
    started = httpx.post(stack.url + "/auth/logins/codex", json={"redirect_uri": f"{stack.url}/auth/callback"},
                         headers={"authorization": f"Bearer {ADMIN}"}).json()
    # Providers add their own parameters to the redirect (Google: scope, authuser, prompt).
    redirect = httpx.get(started["authorize_url"]).headers["location"] + "&scope=openid+email&authuser=0"
    page = httpx.get(redirect)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "is logged in to ChatGPT Plus/Pro (Codex)" in page.text
    assert httpx.get(redirect).status_code == 400  # replaying the redirect does nothing


def test_admin_api_is_off_without_a_token(tmp_path: Path, fakes: dict[str, FakeProvider],
                                          upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
                                          make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(login_config(fakes, upstreams, oauth, tmp_path / "accounts.json"))
    response = httpx.post(stack.url + "/auth/logins/claude", json={}, headers={"authorization": "Bearer x"})
    assert response.status_code == 403 and "auth.admin_token" in response.json()["message"]
    for method, path in (("PUT", "/auth/accounts"), ("GET", "/auth/nope"), ("GET", "/auth")):
        assert httpx.request(method, stack.url + path).status_code == 404  # not a reset from the gRPC server


def test_code_assist_answers_come_back_uncompressed_for_unwrapping(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    login_by_browser(write_config(tmp_path, config), "gemini")
    stack = make_stack(config)
    response = httpx.post(stack.url + "/v1beta/models/gemini-3.8-flash:generateContent",
                          json={"contents": [{"parts": [{"text": "hi"}]}]}, headers={"accept-encoding": "gzip"})
    assert response.status_code == 200 and "candidates" in response.json()
    assert upstreams["codeassist"].wait_for(1)[0].headers["accept-encoding"] == "identity"


def test_a_login_whose_window_is_nearly_full_is_passed_over_while_a_key_can_serve(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    with_anthropic_key(config, fakes, prefer="login")
    login_by_paste(write_config(tmp_path, config), "claude")
    stack = make_stack(config)
    answer = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-5-5",
                         "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
    fakes["anthropic"].script(200, {"anthropic-ratelimit-unified-status": "allowed_warning",
                                    "anthropic-ratelimit-unified-7d-utilization": "0.97",
                                    "anthropic-ratelimit-unified-7d-reset": str(int(time.time()) + 3600)}, answer)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    stack.wait_log("a subscription window is 97% used")
    assert httpx.post(stack.url + "/v1/messages", json=body).status_code == 200
    first, second = fakes["anthropic"].wait_for(2)
    assert first.headers["authorization"].startswith("Bearer ") and "x-api-key" not in first.headers  # the login
    assert second.headers["x-api-key"] == SECRETS["anthropic"] and "authorization" not in second.headers
    # The windows are shown: live in the model's detail, and kept with the account for `extproc auth list`.
    detail = httpx.get(stack.url + "/v1/models/claude-haiku-5-5").json()
    (login,) = [c for c in detail["credential_states"] if c["id"].startswith("claude-")]
    assert login["windows"][0]["name"] == "7d" and login["windows"][0]["used"] == 0.97
    assert login["windows"][0]["resets_at"].endswith("+00:00") and not login.get("exhausted", False)
    eventually(lambda: "7d 97% (resets " in cli(write_config(tmp_path, config), "list").stdout,
               "the windows reach the account")
    # A gateway started again knows the login is nearly full until the window resets: the key serves first.
    stack.stop()
    again = make_stack(config)
    assert httpx.post(again.url + "/v1/messages", json=body).status_code == 200
    assert "x-api-key" in fakes["anthropic"].wait_for(3)[2].headers


def test_an_attempt_whose_login_cannot_be_had_passes_to_the_next_candidate(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Attempt 1 (a key) gets a 429; attempt 2's login cannot refresh, so its processor sends it on with no
    credential to a 503 of Envoy's own, which Envoy retries: attempt 3 (the fallback) answers."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    with_anthropic_key(config, fakes, rotation="fill-first")  # the key first, then the login
    config["providers"]["anthropic-b"] = {"base_url": fakes["mistral"].base_url, "apis": {"anthropic": "/v1"},
                                          "auth": "x-api-key", "api_key": "k-anthropic-b"}
    config["models"] = [{"id": "claude-backup", "provider": "anthropic-b", "context_window": 200000,
                         "capabilities": ["tools", "streaming"]}]
    config["fallbacks"] = {"claude-haiku-5-5": ["claude-backup"]}
    logged_in = short_login(tmp_path, config, oauth)
    oauth.revoke_refresh_tokens()
    until_expired(logged_in)  # and its refresh will be refused
    stack = make_stack(config)
    fakes["anthropic"].script(429)
    response = httpx.post(stack.url + "/v1/messages",
                          json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT})
    assert response.status_code == 200, response.text
    assert response.headers["x-extproc-attempts"] == "3" and response.headers["x-extproc-model"] == "claude-backup"
    (first,) = fakes["anthropic"].wait_for(1)  # the key's attempt; the login's never reached a provider
    assert first.headers["x-api-key"] == SECRETS["anthropic"]
    assert fakes["mistral"].wait_for(1)[0].headers["x-api-key"] == "k-anthropic-b"
    stack.wait_log("refused: The planned credential cannot be used now.")


def test_a_login_cooling_after_server_errors_is_probed_and_back_as_soon_as_its_provider_answers(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """An hour's cooldown after a 503 ends as soon as the provider's model list (no tokens) takes the login."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json",
                          health={"server_error_cooldown": 3600, "probe_interval": 0.3},
                          failover={"attempts": 1})  # the 503 reaches the client: nothing else may serve
    login_by_paste(write_config(tmp_path, config), "claude")
    stack = make_stack(config)
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    fakes["anthropic"].script(503)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    assert failed.value.status_code == 503
    stack.wait_log("probe: credential claude-")
    # The probe is a model-list call with the login's token (the fake's other callers would send an API key).
    probes = [r for r in fakes["anthropic"].list_requests if "authorization" in r.headers]
    with_login = {r.headers["authorization"] for r in probes} == {f"Bearer {oauth.latest_access_token}"}
    assert with_login and all("x-api-key" not in r.headers and "oauth" in r.headers.get("anthropic-beta", "")
                              for r in probes)
    answer = client.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    assert answer.content and len(fakes["anthropic"].requests) == 2


def test_two_gateways_sharing_logins_in_redis_refresh_an_expired_one_exactly_once(
        tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
        redis_server: Any, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """2 × 50 concurrent requests on an expired login, half through each replica: one refresh call, and every
    request goes with the new token. The login lives in Redis, encrypted: no token is readable there."""
    import redis

    from tests.conftest import STATE_KEY

    prefix = f"logins{time.monotonic_ns()}:"
    config = login_config(fakes, upstreams, oauth, tmp_path / "unused.json",
                          state={"redis": {"url": redis_server.url, "prefix": prefix, "key": STATE_KEY}})
    logged_in = short_login(tmp_path, config, oauth)  # the CLI writes the login into Redis
    assert not (tmp_path / "unused.json").exists()
    raw = redis.Redis.from_url(redis_server.url).hgetall(f"{prefix}accounts")
    assert len(raw) == 1 and oauth.latest_access_token.encode() not in next(iter(raw.values()))
    first, second = make_stack(config), make_stack(config)
    until_expired(logged_in)
    calls_before, oauth.refresh_delay = oauth.refresh_calls, 0.5

    def ask(i: int) -> int:
        stack = (first, second)[i % 2]
        return httpx.post(stack.url + "/v1/messages", timeout=30,
                          json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}).status_code

    try:
        with ThreadPoolExecutor(100) as pool:
            statuses = list(pool.map(ask, range(100)))
    finally:
        oauth.refresh_delay = 0
    assert statuses == [200] * 100
    assert oauth.refresh_calls - calls_before == 1
    tokens = {r.headers["authorization"] for r in fakes["anthropic"].wait_for(100)}
    assert tokens == {f"Bearer {oauth.latest_access_token}"}, "a request went with another token than the new one"
    listed = cli(write_config(tmp_path, config), "list").stdout
    assert "claude-" in listed and "active" in listed
    for stack in (first, second):
        no_token_in(stack.logs(), oauth)


def test_a_request_its_client_gave_up_on_does_not_cool_the_login(
        claude_stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """A user who interrupts a coding agent cancels its request while the provider works on it: the attempt ends
    with no answer and no failure of the provider's (a login's attempt is reported even so, for its windows);
    the login is not cooled for it, and the next request goes on it."""
    import threading

    stack = claude_stack
    held = threading.Event()
    fakes["anthropic"].script(200, hold=held)
    body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while the provider still works on the answer
        httpx.post(stack.url + "/v1/messages", json=body, timeout=1)
    fakes["anthropic"].wait_for(1)
    stack.wait_log("given up before an answer (the client went away); nothing learned")
    held.set()
    assert "cooldown" not in stack.logs()
    answer = httpx.post(stack.url + "/v1/messages", json=body)
    assert answer.status_code == 200 and answer.headers["x-extproc-attempts"] == "1"
