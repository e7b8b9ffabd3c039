"""Logins on the fast path, through the real stack: a Claude Pro/Max login that serves every client
(`other_clients: send`) serves Claude Code's requests and the others' from Envoy alone with its current token and
its beta joined to the client's; one that serves Claude Code alone keeps its models on the full path; a refused
token is refreshed and retried within the request, a token refreshed ahead of expiry reaches the routes file with
no request asking, and a 429 fails over to an API key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from extproc.config.data import builtin_flow_data
from tests.conftest import Stack
from tests.e2e.test_fast_path import routed, until_fast
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually

MODEL = "claude-sonnet-5-5"
ALONE = "claude-haiku-5-5"  # no fallback: only the login serves it
BILLING = "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli;"
CLAUDE_CODE = {"system": [{"type": "text", "text": BILLING}, {"type": "text", "text": "You are Claude Code."}]}
BACKUP_KEY = "k-fast-login-backup"


def seed(store: Path, oauth: FakeOAuth, expires_in: float) -> dict[str, Any]:
    issued = oauth.issue_tokens(builtin_flow_data()["claude"]["client_id"])
    store.write_text(json.dumps({"version": 1, "accounts": [{
        "id": "claude-max", "kind": "claude", "email": "me@example.com", "plan": "max",
        "access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
        "expires_at": time.time() + expires_in}]}))
    store.chmod(0o600)
    return issued


def config(fakes: dict[str, FakeProvider], oauth: FakeOAuth, store: Path, skew: float = 0,
           other_clients: str = "send") -> dict[str, Any]:
    """Only the Claude login serves the model (its fallback is on an API key). The login serves every client
    unless told otherwise."""
    return {"discovery": False, "strategy": "none", "translation": False,
            "auth": {"store": str(store), "refresh_skew": skew},
            "oauth": {"claude": {"token_url": f"{oauth.base_url}/v1/oauth/token", "other_clients": other_clients}},
            "providers": {"anthropic": {"base_url": fakes["anthropic"].base_url, "api_key": ""},
                          "backup": {"base_url": fakes["groq"].base_url, "apis": {"anthropic": "/v1"},
                                     "auth": "x-api-key", "api_key": BACKUP_KEY,
                                     "headers": {"anthropic-version": "2023-06-01"}}},
            "models": [{"id": "backup-model", "provider": "backup", "context_window": 200000,
                        "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]}],
            "fallbacks": {MODEL: ["backup-model"]}}


@pytest.fixture(scope="module")
def issued(oauth: FakeOAuth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {"store": (store := tmp_path_factory.mktemp("fast-logins") / "accounts.json"),
            **seed(store, oauth, 8 * 3600)}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], oauth: FakeOAuth, issued: dict[str, Any],
          make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(config(fakes, oauth, issued["store"]))


def claude_code(stack: Stack, body: dict[str, Any] | None = None,
                beta: str | None = "claude-code-20250219", extra: dict[str, str] | None = None) -> httpx.Response:
    """Claude Code's request (or `body`), with the client's own key and its betas (none: no header)."""
    return httpx.post(stack.url + "/v1/messages", json=body or {
        "model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **CLAUDE_CODE},
        headers={"authorization": "Bearer client-own-key", "anthropic-version": "2023-06-01",
                 **({"anthropic-beta": beta} if beta is not None else {}), **(extra or {})}, timeout=30)


def bearer(fake: FakeProvider) -> str:
    return fake.requests[-1].headers["authorization"].removeprefix("Bearer ")


def test_claude_codes_requests_go_fast_on_a_login_that_serves_every_client_with_its_token_and_betas(
        stack: Stack, fakes: dict[str, FakeProvider], issued: dict[str, Any]) -> None:
    fakes["anthropic"].reset()
    assert claude_code(stack).headers["x-extproc-route"] == "direct"  # the first one: the full path
    fast = until_fast(lambda: claude_code(stack))
    assert fast.status_code == 200 and fast.json()["content"][0]["text"] == f"hello from {MODEL}"
    before = routed(stack)
    answer = claude_code(stack, beta="claude-code-20250219, oauth-2025-04-20")
    assert answer.headers["x-extproc-route"] == "direct; fast" and routed(stack) == before  # no processor message
    sent = fakes["anthropic"].requests[-1]
    assert sent.headers["authorization"] == f"Bearer {issued['access_token']}" and "x-api-key" not in sent.headers
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"  # theirs, then the login's once
    assert sent.json()["system"] == CLAUDE_CODE["system"]  # the request as Claude Code sent it
    ours = {h for h in sent.headers if h.startswith("x-extproc")}
    assert ours == {h for h in fakes["anthropic"].requests[0].headers if h.startswith("x-extproc")}  # as the full path
    assert "x-extproc-login" not in ours  # it stays in Envoy


def test_other_clients_go_fast_on_a_login_that_serves_them(stack: Stack, fakes: dict[str, FakeProvider],
                                                            issued: dict[str, Any]) -> None:
    plain = {"model": ALONE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    fast = until_fast(lambda: claude_code(stack, plain, beta=None))
    assert fast.status_code == 200 and fast.headers["x-extproc-model"] == ALONE
    sent = fakes["anthropic"].requests[-1]
    assert bearer(fakes["anthropic"]) == issued["access_token"] and sent.json().get("system") is None
    assert sent.headers["anthropic-beta"] == "oauth-2025-04-20"  # the login's alone when the client sent none


def test_a_stream_to_claude_codes_path_on_the_login_goes_fast_with_its_beta_joined_and_its_usage_recorded(
        stack: Stack, fakes: dict[str, FakeProvider], issued: dict[str, Any]) -> None:
    body = {"model": ALONE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    count = iter(range(1000))

    def streamed() -> httpx.Response:
        with httpx.stream("POST", stack.url + "/v1/messages?beta=true", json=body, timeout=30,  # as Claude Code
                          headers={"anthropic-beta": "tools-1", "x-request-id": f"login-stream-{next(count)}"}
                          ) as answer:
            answer.read()
        return answer
    fast = until_fast(streamed)
    assert fast.status_code == 200 and b"message_stop" in fast.content
    sent = fakes["anthropic"].requests[-1]
    assert bearer(fakes["anthropic"]) == issued["access_token"]
    assert sent.headers["anthropic-beta"] == "tools-1,oauth-2025-04-20"
    record = stack.usage_record(fast.headers["x-request-id"])  # the stream's ends, read by the same script
    assert record["streamed"] is True and record["input_tokens"] == 3 and record["route"] == "direct; fast"


def test_a_login_that_serves_claude_code_alone_keeps_its_models_on_the_full_path(
        fakes: dict[str, FakeProvider], oauth: FakeOAuth, issued: dict[str, Any],
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """`other_clients: refuse`: Envoy cannot read the system prompt's first block, so neither Claude Code's
    requests nor the others' go fast on such a model; each gets what the full path gives it."""
    refusing = config(fakes, oauth, issued["store"], other_clients="refuse")
    stack = make_stack(refusing)
    backup = {"model": "backup-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert claude_code(stack).headers["x-extproc-route"] == "direct"  # noted: the login's model, then the key's
    until_fast(lambda: claude_code(stack, backup))  # the routes file was written after both were noted
    assert stack.fast_routes() == ["fast messages backup-model"]
    fakes["anthropic"].reset()
    answer = claude_code(stack)
    assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct"  # on the login, full path
    assert bearer(fakes["anthropic"]) == issued["access_token"]
    plain = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    other = claude_code(stack, plain)  # never the login: its fallback, on the API key
    assert other.status_code == 200 and other.headers["x-extproc-model"] == "backup-model"
    assert other.headers["x-extproc-route"].startswith("fallback")
    assert fakes["groq"].requests[-1].headers["x-api-key"] == BACKUP_KEY
    refused = claude_code(stack, {**plain, "model": ALONE})  # no fallback: the login's refusal
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert len(fakes["anthropic"].requests) == 1


def test_a_refused_token_is_refreshed_and_retried_in_the_request_and_the_next_route_carries_it(
        stack: Stack, fakes: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    until_fast(lambda: claude_code(stack))
    old = bearer(fakes["anthropic"])
    fakes["anthropic"].reset()
    fakes["anthropic"].script(401, body=b'{"type":"error","error":{"type":"authentication_error","message":"no"}}')
    answer = claude_code(stack)
    assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct; fast"
    assert answer.headers["x-extproc-attempts"] == "1"  # the retry is the login's own, not a failover
    refused, retried = fakes["anthropic"].requests
    new = retried.headers["authorization"].removeprefix("Bearer ")
    assert refused.headers["authorization"] == f"Bearer {old}" and new != old and oauth.is_valid_access_token(new)

    def carries_the_new_token() -> bool:
        fast = claude_code(stack)
        return fast.headers["x-extproc-route"].endswith("fast") and bearer(fakes["anthropic"]) == new
    eventually(carries_the_new_token, "the routes file carries the refreshed token")
    assert old not in stack.logs() and new not in stack.logs()


def test_a_429_on_the_login_fails_over_to_the_api_key_in_the_same_request(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    until_fast(lambda: claude_code(stack))
    fakes["anthropic"].script(429, {"retry-after": "1"})
    # A kept value the client forges is nothing: the route keeps the client's own.
    answer = claude_code(stack, extra={"x-extproc-client-value-anthropic-beta": "forged-2099-01-01"})
    assert answer.status_code == 200 and answer.headers["x-extproc-attempts"] == "2"
    assert answer.headers["x-extproc-model"] == "backup-model"
    sent = fakes["groq"].requests[-1]
    assert sent.headers["x-api-key"] == BACKUP_KEY and "authorization" not in sent.headers
    # The login's flag was joined to the client's on the first attempt; the key's gets the client's own alone.
    assert fakes["anthropic"].requests[-1].headers["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
    assert sent.headers["anthropic-beta"] == "claude-code-20250219"
    assert not [h for r in (sent, fakes["anthropic"].requests[-1]) for h in r.headers if "client-value" in h]


def test_a_token_refreshed_ahead_of_expiry_with_no_request_asking_reaches_the_route(
        fakes: dict[str, FakeProvider], oauth: FakeOAuth, make_stack: Callable[[dict[str, Any]], Stack],
        tmp_path: Path) -> None:
    skew = 3600.0
    first = seed(tmp_path / "accounts.json", oauth, skew + 20)  # within the refresh skew 20 s from now
    stack = make_stack(config(fakes, oauth, tmp_path / "accounts.json", skew=skew))
    until_fast(lambda: claude_code(stack))
    assert bearer(fakes["anthropic"]) == first["access_token"]
    refreshes = oauth.refresh_calls
    eventually(lambda: oauth.refresh_calls > refreshes, "the login is refreshed ahead of its expiry", timeout=40)

    def stored_token() -> str | None:  # the store is written once the refresh's answer is read: a moment after
        token: str = json.loads((tmp_path / "accounts.json").read_text())["accounts"][0]["access_token"]
        return token if token != first["access_token"] else None
    stored = eventually(stored_token, "the refreshed token is stored")

    def carries(token: str) -> bool:
        return token in httpx.get(stack.admin_url + "/config_dump?resource=dynamic_route_configs").text
    eventually(lambda: carries(stored), "Envoy holds the route with the refreshed token")
    fast = claude_code(stack)
    assert fast.headers["x-extproc-route"] == "direct; fast" and bearer(fakes["anthropic"]) == stored
