"""The request path through a real Envoy, the real processor and fake providers, driven by the official SDKs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
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
def stack(fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_stack({
        "providers": provider_config(fakes, without=("mistral",)),
        "models": MODELS,
        "aliases": {"fast": "groq/openai/gpt-oss-20b", "flash": "ge-chat", "sonnet": "an-chat"},
        "strategy": "capability-match",
    })


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key-should-not-leave", max_retries=0)


def test_direct_request_carries_the_injected_key_and_not_the_clients(
        oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    raw = oa.chat.completions.with_raw_response.create(model="oa-chat", messages=CHAT)
    assert raw.parse().choices[0].message.content == "hello from oa-chat"
    assert raw.headers["x-extproc-provider"] == "openai"
    assert raw.headers["x-extproc-model"] == "oa-chat"
    assert raw.headers["x-extproc-route"] == "direct"
    (seen,) = fakes["openai"].wait_for(1)
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {SECRETS['openai']}"
    assert "client-key-should-not-leave" not in json.dumps(seen.headers)
    assert seen.json() == {"model": "oa-chat", "messages": CHAT}


def test_anthropic_sdk_gets_x_api_key_and_version(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="client-anthropic-key", max_retries=0)
    message = client.messages.create(model="sonnet", max_tokens=100, messages=CHAT)
    assert message.content[0].text == "hello from an-chat"  # type: ignore[union-attr]
    (seen,) = fakes["anthropic"].wait_for(1)
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == SECRETS["anthropic"]
    assert seen.headers["anthropic-version"] == client.default_headers["anthropic-version"]  # the SDK's own wins
    assert "authorization" not in seen.headers
    fakes["anthropic"].reset()
    httpx.post(stack.url + "/v1/messages", json={"model": "sonnet", "max_tokens": 5, "messages": CHAT})
    assert fakes["anthropic"].wait_for(1)[0].headers["anthropic-version"] == "2023-06-01"  # the default when absent
    assert "client-anthropic-key" not in json.dumps(seen.headers)
    assert seen.json()["model"] == "an-chat"


def test_alias_rewrites_model_and_path(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    raw = oa.chat.completions.with_raw_response.create(model="fast", messages=CHAT)
    assert raw.headers["x-extproc-route"] == "alias"
    (seen,) = fakes["groq"].wait_for(1)
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.json()["model"] == "openai/gpt-oss-20b"
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert seen.headers["authorization"] == f"Bearer {SECRETS['groq']}"


def test_responses_and_embeddings_endpoints(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    response = oa.responses.create(model="oa-cheap", input="hi")
    assert response.output_text == "hello from oa-cheap"
    embedding = oa.embeddings.create(model="text-embedding-3-small", input="hi")
    assert embedding.data[0].embedding == [0.1, 0.2]
    paths = [r.path for r in fakes["openai"].wait_for(2)]
    assert paths == ["/v1/responses", "/v1/embeddings"]


def test_model_without_credential_falls_back_by_capability(
        oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    raw = oa.chat.completions.with_raw_response.create(
        model="mi-chat", messages=[{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}])
    # mistral has no key; the nearest-priced vision model on a provider speaking OpenAI's API is oa-chat.
    assert raw.headers["x-extproc-route"] == "fallback:capability-match"
    assert raw.headers["x-extproc-model"] == "oa-chat"
    assert fakes["mistral"].requests == []
    assert fakes["openai"].wait_for(1)[0].json()["model"] == "oa-chat"


def test_streaming_passes_through(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    stream = oa.chat.completions.create(model="fast", messages=CHAT, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "hello from openai/gpt-oss-20b"
    assert fakes["groq"].wait_for(1)[0].json()["stream"] is True


def test_gemini_native_path_is_rewritten(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    client = genai.Client(api_key="client-gemini-key",
                          http_options=genai_types.HttpOptions(base_url=stack.url, api_version="v1beta"))
    result = client.models.generate_content(model="flash", contents="hi")
    assert result.text == "hello from ge-chat"
    (seen,) = fakes["gemini"].wait_for(1)
    assert seen.path == "/v1beta/models/ge-chat:generateContent"
    assert seen.headers["x-goog-api-key"] == SECRETS["gemini"]


def test_openai_format_to_gemini_uses_its_openai_endpoint(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    oa.chat.completions.create(model="ge-chat", messages=CHAT)
    (seen,) = fakes["gemini"].wait_for(1)
    assert seen.path == "/v1beta/openai/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {SECRETS['gemini']}"


def test_multi_megabyte_image_request_is_not_rejected(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    blob = base64.b64encode(bytes(6 * 1024 * 1024)).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{blob}"}}
    oa.chat.completions.create(model="oa-chat", messages=[{"role": "user", "content": [image]}])
    (seen,) = fakes["openai"].wait_for(1)
    assert len(seen.body) > 8 * 1024 * 1024
    assert int(seen.headers["content-length"]) == len(seen.body)


def test_request_id_is_in_the_routing_log_line(stack: Stack, oa: openai.OpenAI) -> None:
    oa.chat.completions.create(model="oa-cheap", messages=CHAT, extra_headers={"x-request-id": "rid-e2e-42"})
    line = next(x for x in stack.logs().splitlines() if "rid=rid-e2e-42" in x and " route " in x)
    expected = ("requested='oa-cheap'", "resolved=oa-cheap", "provider=openai", "why=direct", "credential=openai:key1")
    for part in expected:
        assert part in line


BAD_INPUTS = [
    # (path, body, status, envelope)
    ("/v1/chat/completions", b"{not json", 400, "openai"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "openai"),
    ("/v1/chat/completions", b'{"model": 42, "messages": []}', 400, "openai"),
    ("/v1/chat/completions", b'["model"]', 400, "openai"),
    ("/v1/chat/completions", b'{"model": "no-such-model", "messages": []}', 404, "openai"),
    ("/v1/messages", b'{"model": "oa-chat", "max_tokens": 5, "messages": []}', 400, "anthropic"),
    ("/v1/messages", b"", 400, "anthropic"),
    ("/v1/responses", b'{"model": "an-chat", "input": "hi"}', 400, "openai"),  # Anthropic's OpenAI API: chat only
    ("/v1/messages", b'{"model": "no-such-model", "max_tokens": 5, "messages": []}', 404, "anthropic"),
    ("/v1beta/models/no-such-model:generateContent", b'{"contents": []}', 404, "gemini"),
    ("/v1beta/models/ge-chat:generateContent", b"nope", 400, "gemini"),
    ("/v1/unknown", b"{}", 404, "openai"),
    ("/v1beta/models/ge-chat:bogusMethod", b"{}", 404, "gemini"),  # only the methods the gateway knows
    ("/v1beta/models/gemini%2F..%2F..%2Fv1beta%2Fbatches%2Fabc:generateContent", b"{}", 400, "gemini"),
    ("/v1/chat/completions", b'{"model": "openai/a?b=1", "messages": []}', 400, "openai"),
    ("/v1/chat/completions", b'{"model": "oa-chat\\nINFO forged", "messages": []}', 400, "openai"),
]


@pytest.mark.parametrize(("path", "body", "status", "envelope"), BAD_INPUTS)
def test_bad_input_gets_its_error_and_reaches_no_provider(
        stack: Stack, fakes: dict[str, FakeProvider], path: str, body: bytes, status: int, envelope: str) -> None:
    response = httpx.post(stack.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    doc = response.json()
    if envelope == "openai":
        assert set(doc["error"]) >= {"message", "type", "code"}
    elif envelope == "anthropic":
        assert doc["type"] == "error" and doc["error"]["message"]
    else:
        assert doc["error"]["code"] == status and doc["error"]["status"] and doc["error"]["message"]
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


def test_a_dated_claude_id_the_catalog_lacks_goes_to_anthropic(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    """Claude Code asks for dated ids; `model_prefixes` says whose they are, so they pass through, not 404."""
    client = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    client.messages.create(model="claude-opus-4-1-20250805", max_tokens=5, messages=CHAT)  # type: ignore[arg-type]
    seen = fakes["anthropic"].wait_for(1)[0]
    assert seen.json()["model"] == "claude-opus-4-1-20250805"
    assert seen.headers["x-api-key"] == SECRETS["anthropic"]
