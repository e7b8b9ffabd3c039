"""Google Vertex AI as a provider, through a real Envoy: google-auth signs a JWT with a service-account key the test
generated, a fake Google token endpoint checks it with the key's public half and issues an access token, and a fake
Vertex AI takes only that token, on the model's path of its project and location. The google-genai SDK (whole and
streamed) and the openai SDK (translated) are served; a token is reused until it nears expiry, then refreshed
ahead of it; a credential that cannot get a token fails closed, in the client's envelope, saying why."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.auth.exceptions
import httpx
import openai
import pytest
import redis
from google import genai
from google.genai import types as genai_types

from extproc.auth.google import fetch_token
from extproc.bootstrap import PROCESSOR_CLUSTER
from extproc.core.settings import GoogleAuth
from tests.conftest import STATE_KEY, RedisServer, Stack
from tests.fake_google import FakeGoogleToken, FakeVertex, ServiceAccount, make_service_account
from tests.waits import eventually

PROJECT, LOCATION = "acme-llm-prod", "europe-west4"
MODEL = "gemini-4-neon"  # a Gemini model of the catalog: a vertex provider serves it by default
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tokens() -> Iterator[FakeGoogleToken]:
    server = FakeGoogleToken()
    yield server
    server.close()


@pytest.fixture(scope="module")
def account(tokens: FakeGoogleToken, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccount:
    found = make_service_account(tmp_path_factory.mktemp("google"), tokens.token_uri)
    tokens.trust(found)
    return found


@pytest.fixture(scope="module")
def vertex(tokens: FakeGoogleToken) -> Iterator[FakeVertex]:
    server = FakeVertex(tokens, PROJECT, LOCATION, (MODEL, "gemini-3.8-flash"))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset_vertex(vertex: FakeVertex) -> None:
    vertex.reset()


def vertex_provider(vertex: FakeVertex, key_file: Path) -> dict[str, Any]:
    return {"kind": "vertex", "project": PROJECT, "location": LOCATION, "credentials_file": str(key_file),
            "endpoint": vertex.base_url}


@pytest.fixture(scope="module")
def stack(vertex: FakeVertex, account: ServiceAccount, make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """A team that buys Gemini through Vertex AI alone (no Gemini API key)."""
    return make_module_stack({"discovery": False, "strategy": "none",
                              "providers": {"vertex": vertex_provider(vertex, account.file)}})


@pytest.fixture
def gm(stack: Stack) -> genai.Client:
    return genai.Client(api_key="client-own-key",
                        http_options=genai_types.HttpOptions(base_url=stack.url, api_version="v1beta"))


def only_the_token(tokens: FakeGoogleToken, sent: dict[str, str]) -> bool:
    """A token the endpoint issued went as the bearer, and the client's own key did not."""
    bearer = sent.get("authorization", "")
    return bearer.startswith("Bearer ya29.") and tokens.valid(bearer[7:]) and "x-goog-api-key" not in sent


def test_the_fakes_refuse_what_google_refuses(tokens: FakeGoogleToken, vertex: FakeVertex,
                                               tmp_path: Path) -> None:
    stranger = make_service_account(tmp_path, tokens.token_uri, "stranger")  # a key Google does not know
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        fetch_token(GoogleAuth(str(stranger.file)))
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    anonymous = httpx.post(vertex.base_url + vertex.prefix() + f"{MODEL}:generateContent", json=body,
                           headers={"authorization": "Bearer ya29.made-up"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
    assert not vertex.requests


def test_the_genai_sdk_is_served_by_vertex_whole_and_streamed(stack: Stack, tokens: FakeGoogleToken,
                                                              vertex: FakeVertex, gm: genai.Client) -> None:
    answer = gm.models.generate_content(model=MODEL, contents="hi")
    assert answer.text == f"hello from {MODEL}"
    sent = vertex.requests[-1]
    assert sent.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}:generateContent"
    assert only_the_token(tokens, sent.headers)
    streamed = "".join(chunk.text or "" for chunk in gm.models.generate_content_stream(model=MODEL, contents="hi"))
    assert streamed == f"hello from {MODEL}"
    assert vertex.requests[-1].path == vertex.prefix() + f"{MODEL}:streamGenerateContent?alt=sse"
    assert only_the_token(tokens, vertex.requests[-1].headers)


def test_the_openai_sdk_reaches_vertex_translated(stack: Stack, tokens: FakeGoogleToken, vertex: FakeVertex) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(model="gemini-3.8-flash", messages=CHAT)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "hello from gemini-3.8-flash"
    assert raw.headers["x-extproc-provider"] == "vertex" and "translated chat->gemini" in raw.headers["x-extproc-route"]
    assert vertex.requests[-1].path == vertex.prefix() + "gemini-3.8-flash:generateContent"
    chunks = list(oa.chat.completions.create(model="gemini-3.8-flash", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from gemini-3.8-flash"
    sent = vertex.requests[-1]
    assert sent.path == vertex.prefix() + "gemini-3.8-flash:streamGenerateContent?alt=sse"
    assert only_the_token(tokens, sent.headers) and "authorization" in sent.headers
    assert sent.headers["authorization"] != "Bearer client-own-key"


def test_a_token_is_reused_then_refreshed_ahead_of_its_expiry(
        vertex: FakeVertex, account: ServiceAccount, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """A skew as long as the token's life: every use finds it due, is served with it, and refreshes it behind."""
    tokens = vertex.tokens
    stack = make_stack({"discovery": False, "strategy": "none", "fast_path": False, "auth": {"refresh_skew": 3600},
                        "providers": {"vertex": vertex_provider(vertex, account.file)}})
    url = stack.url + f"/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    before = len(tokens.issued)
    assert httpx.post(url, json=body).status_code == 200
    first = vertex.requests[-1].headers["authorization"]
    assert first == f"Bearer {tokens.issued[before]}"  # fetched for it: nothing held yet
    assert httpx.post(url, json=body).status_code == 200
    assert vertex.requests[-1].headers["authorization"] == first  # still good: it went, and a refresh began
    fresh = eventually(lambda: tokens.issued[before + 1] if len(tokens.issued) > before + 1 else None,
                       "the token is refreshed ahead of its expiry")
    assert httpx.post(url, json=body).status_code == 200
    assert vertex.requests[-1].headers["authorization"] == f"Bearer {fresh}"


def test_no_token_fails_closed_in_the_clients_envelope(
        vertex: FakeVertex, tmp_path: Path, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stranger = make_service_account(tmp_path, vertex.tokens.token_uri, "stranger")  # the endpoint refuses it
    refusals = vertex.tokens.refusals
    stack = make_stack({"discovery": False, "strategy": "none",
                        "providers": {"vertex": vertex_provider(vertex, stranger.file)}})
    gemini = httpx.post(stack.url + f"/v1beta/models/{MODEL}:generateContent",
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert gemini.status_code == 503, gemini.text
    error = gemini.json()["error"]
    assert error["status"] == "UNAVAILABLE" and "Google access token" in error["message"], error
    assert "invalid_grant" in error["message"]
    chat = httpx.post(stack.url + "/v1/chat/completions", json={"model": MODEL, "messages": CHAT},
                      headers={"authorization": "Bearer client-own-key"})
    assert chat.status_code == 503 and "Google access token" in json.dumps(chat.json()["error"])
    assert not vertex.requests and vertex.tokens.refusals > refusals


# ---------------------------------------------------------------- one token across processes, a refused one


def generate(url: str) -> httpx.Response:
    return httpx.post(url + f"/v1beta/models/{MODEL}:generateContent",
                      json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})


def processor_streams(stack: Stack) -> list[int]:
    """How many requests each processor worker got from Envoy (its cluster's hosts, by Envoy's own counters)."""
    clusters = httpx.get(stack.admin_url + "/clusters", params={"format": "json"}).json()["cluster_statuses"]
    hosts = next(c for c in clusters if c["name"] == PROCESSOR_CLUSTER)["host_statuses"]
    return [next(int(s.get("value", 0)) for s in h["stats"] if s["name"] == "rq_total") for h in hosts]


def shared_state(redis_server: RedisServer) -> dict[str, Any]:
    return {"redis": {"url": redis_server.url, "prefix": f"vx{time.monotonic_ns()}:", "key": STATE_KEY}}


def test_the_workers_of_a_gateway_share_one_token(
        vertex: FakeVertex, account: ServiceAccount, redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    tokens = vertex.tokens
    state = shared_state(redis_server)
    stack = make_stack({"discovery": False, "strategy": "none", "fast_path": False, "processor": {"workers": 2},
                        "state": state, "providers": {"vertex": vertex_provider(vertex, account.file)}})
    before = len(tokens.issued)
    assert processor_streams(stack) == [0, 0]
    for _ in range(6):
        assert generate(stack.url).status_code == 200
    assert all(n > 0 for n in processor_streams(stack)), "both workers served"
    assert len(tokens.issued) == before + 1  # one fetch: the other worker read it from the shared store
    assert {r.headers["authorization"] for r in vertex.requests} == {f"Bearer {tokens.issued[before]}"}
    assert stack.logs().count("Google access token refreshed") == 1
    raw = redis.Redis.from_url(redis_server.url).hgetall(state["redis"]["prefix"] + "google:accounts")
    assert len(raw) == 1 and tokens.issued[before].encode() not in next(iter(raw.values()))  # encrypted at rest


@pytest.mark.parametrize("shared", ["redis", "file"])
def test_replicas_share_one_token(
        shared: str, vertex: FakeVertex, account: ServiceAccount, redis_server: RedisServer, tmp_path: Path,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Through Redis across hosts; through the accounts file's directory on one host (the logins' store)."""
    tokens = vertex.tokens
    config = {"discovery": False, "strategy": "none", "fast_path": False, "processor": {"workers": 1},
              "providers": {"vertex": vertex_provider(vertex, account.file)},
              **({"state": shared_state(redis_server)} if shared == "redis"
                 else {"auth": {"store": str(tmp_path / "accounts.json")}})}
    first, second = make_stack(config), make_stack(config)
    before = len(tokens.issued)
    for stack in (first, second, first, second):
        assert generate(stack.url).status_code == 200
    assert len(tokens.issued) == before + 1
    assert {r.headers["authorization"] for r in vertex.requests} == {f"Bearer {tokens.issued[before]}"}
    if shared == "file":
        assert (tmp_path / "google-tokens.json").stat().st_mode & 0o777 == 0o600


def test_a_refused_token_is_refreshed_and_the_request_retried_once(
        vertex: FakeVertex, account: ServiceAccount, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    tokens = vertex.tokens
    stack = make_stack({"discovery": False, "strategy": "none", "fast_path": False,
                        "providers": {"vertex": vertex_provider(vertex, account.file)}})
    assert generate(stack.url).status_code == 200
    old = vertex.requests[-1].headers["authorization"].removeprefix("Bearer ")
    tokens.revoke(old)  # before its expiry: Vertex answers 401
    vertex.reset()
    issued = len(tokens.issued)
    answer = generate(stack.url)
    assert answer.status_code == 200, answer.text
    assert len(tokens.issued) == issued + 1 and answer.headers["x-extproc-attempts"] == "1"
    assert [r.headers["authorization"] for r in vertex.requests] == [f"Bearer {tokens.issued[-1]}"]  # (a 401 is
    # not recorded by the fake)
    stack.wait_log("its token was refused; retried with a refreshed one")
    card = httpx.get(f"{stack.url}/v1/models/vertex/{MODEL}").json()
    assert card["available"], card  # refreshed, not suspended
    assert generate(stack.url).status_code == 200
    assert vertex.requests[-1].headers["authorization"] == f"Bearer {tokens.issued[-1]}"


# ---------------------------------------------------------------- the fast path


def routed(stack: Stack) -> int:
    """How many requests the processor has routed (each logs one line)."""
    return stack.logs().count('"message":"route rid=')


def test_a_vertex_model_goes_fast_with_the_shared_token_republished_as_it_refreshes(
        vertex: FakeVertex, account: ServiceAccount, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """A skew as long as the token's life: every look refreshes it (one fetch), and the route follows."""
    tokens = vertex.tokens
    stack = make_stack({"discovery": False, "strategy": "none", "auth": {"refresh_skew": 3600},
                        "providers": {"vertex": vertex_provider(vertex, account.file)}})
    assert generate(stack.url).headers["x-extproc-route"] == "direct"  # the full path: the model is now hot
    fast = eventually(lambda: (a := generate(stack.url)).headers["x-extproc-route"].endswith("; fast") and a,
                      "a Vertex request goes fast")
    assert fast.status_code == 200 and fast.json()["candidates"][0]["content"]["parts"][0]["text"] == \
        f"hello from {MODEL}"
    assert (fast.headers["x-extproc-provider"], fast.headers["x-extproc-model"]) == ("vertex", MODEL)
    before, issued = routed(stack), len(tokens.issued)
    sent = vertex.requests[-1]
    assert sent.path == vertex.prefix() + f"{MODEL}:generateContent"  # rewritten whole by Envoy
    assert only_the_token(tokens, sent.headers)
    rid = "vertex-fast-usage"
    answer = httpx.post(stack.url + f"/v1beta/models/{MODEL}:generateContent", headers={"x-request-id": rid},
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert answer.headers["x-extproc-route"] == "direct; fast"
    record = stack.usage_record(rid)  # read by Envoy from the answer's usageMetadata
    assert (record["provider"], record["input_tokens"], record["output_tokens"]) == ("vertex", 3, 4)

    def carries_a_newer_token() -> bool:
        answer = generate(stack.url)
        bearer = vertex.requests[-1].headers["authorization"].removeprefix("Bearer ")
        return answer.headers["x-extproc-route"].endswith("; fast") and bearer in tokens.issued[issued:]

    eventually(carries_a_newer_token, "the route carries the token refreshed ahead of expiry")
    assert routed(stack) == before  # not one of them went through the processor


def test_a_token_refused_on_the_fast_path_is_refreshed_and_the_request_retried(
        vertex: FakeVertex, account: ServiceAccount, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    tokens = vertex.tokens
    stack = make_stack({"discovery": False, "strategy": "none",
                        "providers": {"vertex": vertex_provider(vertex, account.file)}})
    generate(stack.url)
    eventually(lambda: generate(stack.url).headers["x-extproc-route"].endswith("; fast"), "a request goes fast")
    tokens.revoke(vertex.requests[-1].headers["authorization"].removeprefix("Bearer "))
    issued = len(tokens.issued)
    answer = generate(stack.url)
    assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct; fast", answer.text
    assert len(tokens.issued) == issued + 1
    assert vertex.requests[-1].headers["authorization"] == f"Bearer {tokens.issued[-1]}"
    stack.wait_log("its token was refused; retried with a refreshed one")
