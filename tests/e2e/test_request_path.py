"""The request path through a real Envoy, the real processor and fake providers, driven by the official SDKs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import SECRETS, Stack, provider_config
from tests.fakes import FakeProvider

CHAT = [{"role": "user", "content": "hi"}]
CLIENT_KEY = "client-key-should-not-leave"  # what clients send as their own key

MODELS: list[dict[str, Any]] = [
    {"id": "oa-chat", "provider": "openai", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 1.0, "output_price": 4.0, "capabilities": ["tools", "vision", "streaming"]},
    {"id": "oa-cheap", "provider": "openai", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 0.1, "output_price": 0.4, "capabilities": ["tools", "streaming"]},
    {"id": "mi-chat", "provider": "mistral", "context_window": 100000, "max_output_tokens": 8000,
     "input_price": 1.0, "output_price": 4.0, "capabilities": ["tools", "vision", "streaming"]},
    {"id": "an-chat", "provider": "anthropic", "context_window": 200000, "max_output_tokens": 8000,
     "input_price": 3.0, "output_price": 15.0, "capabilities": ["tools", "vision", "streaming", "reasoning"]},
    {"id": "ge-chat", "provider": "gemini", "context_window": 1000000, "max_output_tokens": 8000,
     "input_price": 0.3, "output_price": 2.5, "capabilities": ["tools", "vision", "streaming"]},
]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({
        "providers": provider_config(fakes, without=("mistral",)),
        "models": MODELS,
        "aliases": {"fast": "groq/openai/gpt-oss-20b", "flash": "ge-chat", "sonnet": "an-chat"},
        "strategy": "capability-match",
    })


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return _openai(stack.url)


# Happy paths: one row per client API, provider and routing rule; a new API or provider is one more row.


@dataclass(frozen=True)
class Reply:
    """What the client saw: the response headers, and the answer its SDK handed back (a text, a vector)."""

    headers: Mapping[str, str]
    result: Any


Call = Callable[[str], Reply]  # given the gateway's URL, make one request as a client would


def _openai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)


def openai_chat(model: str, messages: list[dict[str, Any]] = CHAT) -> Call:
    def call(url: str) -> Reply:
        raw = _openai(url).chat.completions.with_raw_response.create(model=model, messages=messages)
        return Reply(raw.headers, raw.parse().choices[0].message.content)
    return call


def openai_chat_stream(model: str) -> Call:
    def call(url: str) -> Reply:
        raw = _openai(url).chat.completions.with_raw_response.create(model=model, messages=CHAT, stream=True)
        return Reply(raw.headers, "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse()))
    return call


def openai_responses(model: str) -> Call:
    def call(url: str) -> Reply:
        raw = _openai(url).responses.with_raw_response.create(model=model, input="hi")
        return Reply(raw.headers, raw.parse().output_text)
    return call


def openai_embeddings(model: str) -> Call:
    def call(url: str) -> Reply:
        raw = _openai(url).embeddings.with_raw_response.create(model=model, input="hi")
        return Reply(raw.headers, raw.parse().data[0].embedding)
    return call


def anthropic_messages(model: str) -> Call:
    def call(url: str) -> Reply:
        client = anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        raw = client.messages.with_raw_response.create(model=model, max_tokens=100, messages=CHAT)  # type: ignore[arg-type]
        return Reply(raw.headers, raw.parse().content[0].text)  # type: ignore[union-attr]
    return call


def anthropic_without_version(model: str) -> Call:
    """Plain HTTP, the way a hand-written client may call: a key but no anthropic-version header."""
    def call(url: str) -> Reply:
        response = httpx.post(url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
                              json={"model": model, "max_tokens": 5, "messages": CHAT})
        response.raise_for_status()
        return Reply(response.headers, response.json()["content"][0]["text"])
    return call


def gemini_generate(model: str) -> Call:
    def call(url: str) -> Reply:
        client = genai.Client(api_key=CLIENT_KEY,
                              http_options=genai_types.HttpOptions(base_url=url, api_version="v1beta"))
        result = client.models.generate_content(model=model, contents="hi")
        assert result.sdk_http_response is not None
        return Reply(result.sdk_http_response.headers or {}, result.text)
    return call


def bearer(provider: str) -> str:
    return f"Bearer {SECRETS[provider]}"


def routed(provider: str, model: str, route: str) -> dict[str, str]:
    """The response headers that say where the gateway sent a request, and why."""
    return {"x-extproc-provider": provider, "x-extproc-model": model, "x-extproc-route": route}


SDK_ANTHROPIC_VERSION = anthropic.Anthropic(api_key="unused").default_headers["anthropic-version"]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
VISION_CHAT = [{"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}]


@dataclass(frozen=True)
class Case:
    """One happy path: a client call, and what the one provider that gets it must see and the client get back."""

    id: str
    call: Call
    provider: str  # the only fake that receives a request, exactly one
    path: str  # where that request arrives
    headers: Mapping[str, str | None]  # headers it carries (None: a header it must not carry)
    body: Mapping[str, Any]  # fields of its JSON body
    reply_headers: Mapping[str, str]  # what the gateway tells the client about the route
    result: Any  # what the client's SDK handed back
    whole_body: bool = False  # `body` is the entire upstream body, not some of its fields


HAPPY_PATHS = [
    Case("openai-chat-direct-gets-the-injected-key", openai_chat("oa-chat"), "openai",
         "/v1/chat/completions", {"authorization": bearer("openai")},
         {"model": "oa-chat", "messages": CHAT}, whole_body=True,
         reply_headers=routed("openai", "oa-chat", "direct"),
         result="hello from oa-chat"),
    Case("anthropic-sdk-gets-x-api-key-and-keeps-its-own-version", anthropic_messages("sonnet"), "anthropic",
         "/v1/messages",
         {"x-api-key": SECRETS["anthropic"], "anthropic-version": SDK_ANTHROPIC_VERSION, "authorization": None},
         {"model": "an-chat"},
         reply_headers=routed("anthropic", "an-chat", "alias"),
         result="hello from an-chat"),
    Case("anthropic-version-defaults-when-the-client-sends-none", anthropic_without_version("sonnet"), "anthropic",
         "/v1/messages", {"x-api-key": SECRETS["anthropic"], "anthropic-version": "2023-06-01", "authorization": None},
         {"model": "an-chat"},
         reply_headers=routed("anthropic", "an-chat", "alias"),
         result="hello from an-chat"),
    Case("alias-rewrites-model-and-path-to-groq", openai_chat("fast"), "groq",
         "/openai/v1/chat/completions", {"authorization": bearer("groq")}, {"model": "openai/gpt-oss-20b"},
         reply_headers=routed("groq", "openai/gpt-oss-20b", "alias"),
         result="hello from openai/gpt-oss-20b"),
    Case("openai-responses-endpoint", openai_responses("oa-cheap"), "openai",
         "/v1/responses", {"authorization": bearer("openai")}, {"model": "oa-cheap", "input": "hi"},
         reply_headers=routed("openai", "oa-cheap", "direct"),
         result="hello from oa-cheap"),
    Case("openai-embeddings-endpoint-for-a-prefix-known-model", openai_embeddings("text-embedding-3-small"), "openai",
         "/v1/embeddings", {"authorization": bearer("openai")}, {"model": "text-embedding-3-small", "input": "hi"},
         reply_headers=routed("openai", "text-embedding-3-small", "direct"),
         result=[0.1, 0.2]),
    Case("model-without-credential-falls-back-by-capability", openai_chat("mi-chat", VISION_CHAT), "openai",
         # mistral has no key; the nearest-priced vision model on a provider speaking OpenAI's API is oa-chat.
         "/v1/chat/completions", {"authorization": bearer("openai")}, {"model": "oa-chat", "messages": VISION_CHAT},
         reply_headers=routed("openai", "oa-chat", "fallback:capability-match"),
         result="hello from oa-chat"),
    Case("streaming-passes-through", openai_chat_stream("fast"), "groq",
         "/openai/v1/chat/completions", {"authorization": bearer("groq")},
         {"model": "openai/gpt-oss-20b", "stream": True},
         reply_headers=routed("groq", "openai/gpt-oss-20b", "alias"),
         result="hello from openai/gpt-oss-20b"),
    Case("gemini-native-path-is-rewritten", gemini_generate("flash"), "gemini",
         "/v1beta/models/ge-chat:generateContent", {"x-goog-api-key": SECRETS["gemini"], "authorization": None},
         {"contents": [{"parts": [{"text": "hi"}], "role": "user"}]},
         reply_headers=routed("gemini", "ge-chat", "alias"),
         result="hello from ge-chat"),
    Case("openai-format-to-gemini-uses-its-openai-endpoint", openai_chat("ge-chat"), "gemini",
         "/v1beta/openai/chat/completions", {"authorization": bearer("gemini"), "x-goog-api-key": None},
         {"model": "ge-chat", "messages": CHAT},
         reply_headers=routed("gemini", "ge-chat", "direct"),
         result="hello from ge-chat"),
    # Claude Code asks for dated ids; `model_prefixes` says whose they are, so they pass through, not 404.
    Case("dated-claude-id-the-catalog-lacks-goes-to-anthropic", anthropic_messages("claude-opus-4-1-20250805"),
         "anthropic", "/v1/messages", {"x-api-key": SECRETS["anthropic"], "authorization": None},
         {"model": "claude-opus-4-1-20250805"},
         reply_headers=routed("anthropic", "claude-opus-4-1-20250805", "direct"),
         result="hello from claude-opus-4-1-20250805"),
]


@pytest.mark.parametrize("case", HAPPY_PATHS, ids=lambda case: case.id)
def test_happy_path(stack: Stack, fakes: dict[str, FakeProvider], case: Case) -> None:
    reply = case.call(stack.url)
    seen_headers = {k: reply.headers.get(k) for k in case.reply_headers}
    assert seen_headers == dict(case.reply_headers)
    assert reply.result == case.result

    (seen,) = fakes[case.provider].wait_for(1)
    assert {name: len(fake.requests) for name, fake in fakes.items() if fake.requests} == {case.provider: 1}
    assert (seen.method, seen.path) == ("POST", case.path)
    assert {k: seen.headers.get(k) for k in case.headers} == dict(case.headers)
    assert CLIENT_KEY not in json.dumps(seen.headers)  # the client's key never leaves the gateway
    assert int(seen.headers["content-length"]) == len(seen.body)  # also where the body was rewritten
    doc = seen.json()
    if case.whole_body:
        assert doc == case.body
    else:
        assert {k: doc.get(k) for k in case.body} == dict(case.body)


def test_multi_megabyte_image_request_is_not_rejected(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    blob = base64.b64encode(bytes(6 * 1024 * 1024)).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{blob}"}}
    oa.chat.completions.create(model="oa-chat", messages=[{"role": "user", "content": [image]}])
    (seen,) = fakes["openai"].wait_for(1)
    assert len(seen.body) > 8 * 1024 * 1024
    assert int(seen.headers["content-length"]) == len(seen.body)


def test_request_id_is_in_the_routing_log_line(stack: Stack, oa: openai.OpenAI) -> None:
    oa.chat.completions.create(model="oa-cheap", messages=CHAT, extra_headers={"x-request-id": "rid-e2e-42"})
    line = next(x for x in stack.logs().splitlines() if "route rid=rid-e2e-42" in x)
    expected = ("requested='oa-cheap'", "resolved=oa-cheap", "provider=openai", "why=direct", "credential=openai:key1")
    for part in expected:
        assert part in line


BAD_INPUTS = [
    # (path, body, status, envelope, code); code is the envelope's machine-readable one:
    # error.code (OpenAI), error.type (Anthropic), error.status (Gemini)
    ("/v1/chat/completions", b"{not json", 400, "openai", "invalid_json"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "openai", "missing_model"),
    ("/v1/chat/completions", b'{"model": 42, "messages": []}', 400, "openai", "invalid_model"),
    ("/v1/chat/completions", b'["model"]', 400, "openai", "invalid_request"),
    ("/v1/chat/completions", b'{"model": "no-such-model", "messages": []}', 404, "openai", "model_not_found"),

    ("/v1/messages", b"", 400, "anthropic", "invalid_request_error"),
    ("/v1/messages", b'{"model": "no-such-model", "max_tokens": 5, "messages": []}', 404, "anthropic",
     "not_found_error"),
    ("/v1beta/models/no-such-model:generateContent", b'{"contents": []}', 404, "gemini", "NOT_FOUND"),
    ("/v1beta/models/ge-chat:generateContent", b"nope", 400, "gemini", "INVALID_ARGUMENT"),
    ("/v1/unknown", b"{}", 404, "openai", "unknown_endpoint"),
    # only the methods the gateway knows
    ("/v1beta/models/ge-chat:bogusMethod", b"{}", 404, "gemini", "NOT_FOUND"),
    ("/v1beta/models/gemini%2F..%2F..%2Fv1beta%2Fbatches%2Fabc:generateContent", b"{}", 400, "gemini",
     "INVALID_ARGUMENT"),
    ("/v1/chat/completions", b'{"model": "openai/a?b=1", "messages": []}', 400, "openai", "invalid_model"),
    ("/v1/chat/completions", b'{"model": "oa-chat\\nINFO forged", "messages": []}', 400, "openai", "invalid_model"),
]


@pytest.mark.parametrize(("path", "body", "status", "envelope", "code"), BAD_INPUTS)
def test_bad_input_gets_its_error_and_reaches_no_provider(stack: Stack, fakes: dict[str, FakeProvider], path: str,
                                                          body: bytes, status: int, envelope: str, code: str) -> None:
    response = httpx.post(stack.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    doc = response.json()
    if envelope == "openai":
        assert set(doc["error"]) >= {"message", "type", "code"}
        assert doc["error"]["code"] == code
    elif envelope == "anthropic":
        assert doc["type"] == "error" and doc["error"]["message"]
        assert doc["error"]["type"] == code
    else:
        assert doc["error"]["code"] == status and doc["error"]["status"] and doc["error"]["message"]
        assert doc["error"]["status"] == code
    assert all(not f.requests for f in fakes.values())


def test_sdk_sees_a_typed_error_for_an_unknown_model(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oa.chat.completions.create(model="no-such-model", messages=CHAT)
    assert caught.value.code == "model_not_found"
    assert "GET /v1/models" in caught.value.message


def test_models_list_is_served(stack: Stack) -> None:
    doc = httpx.get(stack.url + "/v1/models").json()
    by_id = {m["id"]: m for m in doc["data"]}
    assert doc["object"] == "list"
    assert by_id["oa-chat"]["available"] is True
    assert by_id["mi-chat"]["available"] is False
    assert by_id["mi-chat"]["unavailable_reason"] == "no credential"
