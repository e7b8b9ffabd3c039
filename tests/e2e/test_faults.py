"""Faults injected below the gateway, through a real Envoy and the real processor.

A provider that takes the connection and never answers, and an OAuth token endpoint that is down while a
login's token runs out. What must hold: the client always gets an answer in its own API's envelope, a broken
credential is taken out of rotation (and the next request does not wait on it again), and what recovers is
used again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from extproc.auth.store import TokenStore
from tests.conftest import SECRETS, Stack
from tests.e2e.test_logins import login_by_paste, login_config, with_anthropic_key, write_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.faults import Blackhole, Outage
from tests.waits import eventually

CHAT: Any = [{"role": "user", "content": "hi"}]  # Any: each SDK types its messages its own way
FIRST_BYTE_TIMEOUT = 3.0  # s: the stalled attempt is abandoned after this (a healthy one answers well within it)
UPSTREAM_TIMEOUT = 5.0  # s of silence that end an answer midway; above FIRST_BYTE_TIMEOUT, so that a client's
# request waiting on a stalled attempt is not itself timed out as idle before its fallback is tried
COOLDOWN = 120.0  # s a stalled provider stays out of rotation: long enough to observe, never waited for


@pytest.fixture(scope="module")
def blackhole() -> Iterator[Blackhole]:
    server = Blackhole()
    yield server
    server.close()


FIRST_EVENT = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,' \
              b'"delta":{"role":"assistant","content":"hello"},"finish_reason":null}]}\n\n'
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" \
              + b"%x\r\n%s\r\n" % (len(FIRST_EVENT), FIRST_EVENT)


@pytest.fixture(scope="module")
def stuck_stream() -> Iterator[Blackhole]:
    """A provider that starts streaming its answer, one event, and then goes silent on an open connection."""
    server = Blackhole(STREAM_HEAD)
    yield server
    server.close()


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
            "capabilities": ["tools", "streaming"]}


# Each test stalls providers of its own (all pointing at the one blackhole), so the cooldown one test causes
# never reaches another's request, in any order.
STALLED = {  # provider → (client API, auth style, key)
    "hang-oa": ("openai", "bearer", "k-hang-oa"),
    "hang-an": ("anthropic", "x-api-key", "k-hang-an"),
    "hang-fb": ("openai", "bearer", "k-hang-fb"),
    "hang-st": ("openai", "bearer", "k-hang-st"),
}


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], blackhole: Blackhole, stuck_stream: Blackhole,
          make_module_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    providers: dict[str, Any] = {
        name: {"base_url": blackhole.base_url, "apis": {api: "/v1"}, "auth": auth, "api_key": key,
               "probe": False}  # a probe would knock on the blackhole too: only requests may count here
        for name, (api, auth, key) in STALLED.items()}
    providers["stuck"] = {"base_url": stuck_stream.base_url, "apis": {"openai": "/v1"}, "api_key": "k-stuck",
                          "probe": False}
    providers["hang-backup"] = {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"},
                                "api_key": "k-hang-backup"}
    stack = make_module_stack({
        "providers": providers,
        "models": [_model(f"{name}-model", name) for name in (*STALLED, "stuck", "hang-backup")],
        "fallbacks": {"hang-fb-model": ["hang-backup-model"]},  # the others have none: their failure is the client's
        "strategy": "none",
        "fast_path": False,  # the full path, which learns before the next request is routed: a fast route is
        # withdrawn a moment after (test_fast_path watches it follow health)
        "discovery": False,
        "failover": {"first_byte_timeout": FIRST_BYTE_TIMEOUT},
        "upstream_timeout": UPSTREAM_TIMEOUT,
        "health": {"server_error_cooldown": COOLDOWN, "probe_interval": 0},
    })
    yield stack
    logs = stack.logs()
    assert not [name for name, (_, _, key) in STALLED.items() if key in logs], "a key reached the logs"
    print(f"\nstalled providers: {blackhole.accepted + stuck_stream.accepted} stalled connections injected")


def test_a_provider_that_never_answers_ends_in_the_openai_envelope_and_cools(
        stack: Stack, blackhole: Blackhole) -> None:
    before = blackhole.accepted
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="hang-oa-model", messages=CHAT)
    response = failed.value.response
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]  # OpenAI's envelope, not Envoy's plain "upstream request timeout"
    assert isinstance(error["message"], str) and error["message"] and "type" in error
    assert blackhole.accepted == before + 1, "the request never reached the stalled provider"
    detail = stack.unavailable_card("hang-oa-model")
    (state,) = detail["credential_states"]
    assert state["id"] == "hang-oa:key1" and state["available"] is False
    assert state["unavailable_reason"].startswith("cooldown until ")
    # While it cools, the next request is answered at once, in the envelope, without knocking again.
    again = httpx.post(f"{stack.url}/v1/chat/completions", json={"model": "hang-oa-model", "messages": CHAT})
    assert again.status_code == 503 and again.json()["error"]["message"]
    assert 0 < int(again.headers["retry-after"]) <= COOLDOWN  # when the cooldown ends
    assert blackhole.accepted == before + 1


def test_a_provider_that_never_answers_ends_in_the_anthropic_envelope(stack: Stack, blackhole: Blackhole) -> None:
    before = blackhole.accepted
    client = anthropic.Anthropic(base_url=stack.url, api_key="client-key", max_retries=0, timeout=30)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="hang-an-model", max_tokens=5, messages=CHAT)
    response = failed.value.response
    assert response.status_code == 504
    doc = response.json()
    assert doc["type"] == "error" and doc["error"]["type"] and doc["error"]["message"]  # Anthropic's envelope
    assert blackhole.accepted == before + 1
    keyed = b"k-hang-an" in blackhole.received
    assert keyed, "the stalled attempt went without its key"
    stack.unavailable_card("hang-an-model")


def test_with_a_fallback_the_stalled_request_succeeds_there_and_the_next_skips_the_stall(
        stack: Stack, blackhole: Blackhole, fakes: dict[str, FakeProvider]) -> None:
    before = blackhole.accepted
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(model="hang-fb-model", messages=CHAT)
    assert raw.parse().choices[0].message.content == "hello from hang-backup-model"
    assert (raw.headers["x-extproc-attempts"], raw.headers["x-extproc-provider"]) == ("2", "hang-backup")
    assert blackhole.accepted == before + 1
    stack.unavailable_card("hang-fb-model")
    raw = client.chat.completions.with_raw_response.create(model="hang-fb-model", messages=CHAT)
    assert (raw.headers["x-extproc-attempts"], raw.headers["x-extproc-model"]) == ("1", "hang-backup-model")
    assert blackhole.accepted == before + 1, "the cooling provider was tried again"
    assert [r.headers["authorization"] for r in fakes["groq"].wait_for(2)] == ["Bearer k-hang-backup"] * 2


def test_a_stream_that_never_starts_ends_in_the_envelope(stack: Stack, blackhole: Blackhole) -> None:
    """A streamed request goes through the processor's relay: the relay's own call must not outlive the
    attempt, and the client gets Envoy's timeout in its envelope, not a hang or a bare reset."""
    before = blackhole.accepted
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="hang-st-model", messages=CHAT, stream=True)
    assert failed.value.response.status_code == 504
    assert failed.value.response.json()["error"]["message"]
    assert blackhole.accepted == before + 1
    stack.unavailable_card("hang-st-model")


def test_a_stream_that_goes_silent_midway_ends_with_an_error_event(stack: Stack, stuck_stream: Blackhole) -> None:
    """Past the first byte there is no failing over: after upstream_timeout of silence the stream ends with an
    error the SDK raises, never a silent end it would read as a complete (short) answer."""
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0, timeout=30)
    received = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in client.chat.completions.create(model="stuck-model", messages=CHAT, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["hello"]
    assert "stream failed before the answer was complete" in str(failed.value)
    assert stuck_stream.accepted == 1
    stack.unavailable_card("stuck-model")


# ---------------------------------------------------------------- the OAuth token endpoint down during a refresh

@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    yield server
    server.close()


ADMIN = "admin-token-for-fault-tests-0123"
DUE_IN = 40.0  # s the login's token has left while it is due (under refresh_skew) but valid: longer than that
# part of the test takes, however loaded the machine


def login_state(stack: Stack, model: str = "claude-haiku-5-5") -> dict[str, Any]:
    """The login's credential state in the model's detail (the Models API, as an operator sees it)."""
    detail = httpx.get(f"{stack.url}/v1/models/{model}").json()
    states: list[dict[str, Any]] = [c for c in detail["credential_states"] if c["id"].startswith("claude-")]
    (state,) = states
    return state


@pytest.mark.parametrize("outage", ["503", "refused"])
def test_a_token_endpoint_down_at_refresh_time_costs_no_request(
        outage: str, tmp_path: Path, fakes: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """The token is due for refresh and the endpoint is down: requests go with the current token while it is
    valid; once it has expired the login is out of rotation (shown as such) and the API key serves; when the
    endpoint is back, the login is refreshed and serves again. No request fails at any point."""
    front = Outage(oauth.port)
    try:
        store_path = tmp_path / "accounts.json"
        upstreams = {"chatgpt": fakes["openai"], "codeassist": fakes["gemini"]}  # unused by this test
        config = login_config(fakes, upstreams, oauth, store_path,
                              health={"server_error_cooldown": 3600, "probe_interval": 0.3})
        config["oauth"]["claude"]["token_url"] = f"{front.base_url}/v1/oauth/token"
        config["auth"].update(refresh_skew=60, admin_token=ADMIN)  # a token with under a minute left is due
        with_anthropic_key(config, fakes, prefer="login", rotation="fill-first")  # the login first while it serves
        login_by_paste(write_config(tmp_path, config), "claude")
        stack = make_stack(config)
        body = {"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT}
        statuses: list[int] = []

        tokens: dict[str, str] = {}  # access token → its name here: assertions name tokens, never show them

        def ask() -> str:
            """One request; what served it: `key`, or `login:<name of the token it went with>`."""
            response = httpx.post(stack.url + "/v1/messages", json=body, timeout=30)
            statuses.append(response.status_code)
            seen = fakes["anthropic"].wait_for(len(statuses))[-1].headers
            if seen.get("x-api-key") == SECRETS["anthropic"]:
                return "key"
            return "login:" + tokens.get(seen.get("authorization", "").removeprefix("Bearer "), "unknown")

        tokens[oauth.latest_access_token or ""] = "first"
        assert ask() == "login:first"

        front.set(outage)
        (account,) = TokenStore(store_path).load()
        admin = {"authorization": f"Bearer {ADMIN}"}

        def expires(at: float) -> None:
            """The login's token now expires `at` (written as another process would: the gateway reloads the
            store when it changes), once the gateway has read it."""
            TokenStore(store_path).update(account.id, lambda a: dataclasses.replace(a, expires_at=at))

            def reloaded() -> bool:
                listed = httpx.get(stack.url + "/auth/accounts", headers=admin).json()["accounts"]
                return bool(listed) and listed[0]["expires_at"] != "" and abs(_unix(listed[0]["expires_at"]) - at) < 1
            eventually(reloaded, "the gateway reloads the store")

        expires(time.time() + DUE_IN)  # the endpoint is down and the token due: while valid, it still serves
        served_while_valid = [ask() for _ in range(3)]
        assert set(served_while_valid) == {"login:first"}
        assert login_state(stack)["available"] is True

        expires(time.time() - 1)  # the token has expired; the endpoint is still down
        assert ask() == "key"
        state = login_state(stack)
        assert state["available"] is False and state["unavailable_reason"].startswith("suspended until ")
        assert "the refresh failed" in state["unavailable_reason"] or "refused the refresh" in \
            state["unavailable_reason"]
        assert ask() == "key"

        calls = oauth.refresh_calls
        front.set("up")  # the endpoint is back: a probe refreshes the login and its provider takes the new token
        eventually(lambda: login_state(stack)["available"] is True, "the login comes back")
        assert oauth.refresh_calls == calls + 1
        fresh = oauth.latest_access_token or ""
        tokens.setdefault(fresh, "fresh")
        # Served by the login again: at once on the full path; on the fast path once Envoy has read the routes
        # file written when the login came back (the key serves the requests in between, none fails).
        eventually(lambda: ask() == "login:fresh", "the refreshed login serves again")
        stored = TokenStore(store_path).get(account.id)
        persisted = stored is not None and stored.access_token == fresh
        assert persisted, "the refreshed pair was not persisted"
        assert statuses == [200] * len(statuses)  # no request was lost to the outage
        if outage == "503":
            assert front.answered_503 >= 1
        failed = sum(1 for line in stack.logs().splitlines() if "refreshing ahead of expiry failed" in line
                     or f"credential {account.id} unavailable" in line)
        print(f"\ntoken endpoint {outage}: {front.answered_503} token calls answered 503, {failed} failed refreshes "
              f"logged, {len(statuses)} requests, {statuses.count(200)} served")
    finally:
        front.close()


def _unix(rfc3339: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(rfc3339).timestamp()
