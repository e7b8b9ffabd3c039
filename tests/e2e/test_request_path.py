"""The request path through a real Envoy, the real processor and fake providers, driven by the official SDKs.
The happy paths, one row per client API, provider and routing rule, are test_paths' table (which runs each
through every path it takes)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack, provider_config
from tests.e2e.catalog import CHAT, CLIENT_KEY, MODELS
from tests.fakes import FakeProvider


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
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=CLIENT_KEY, max_retries=0)


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
