"""Azure OpenAI as a provider, through a real Envoy: the official SDKs reach a fake Azure that checks what Azure
checks (the resource's key in `api-key`, a deployment it has, `api-version` on a deployment's path), on the v1 API
and on the deployment paths, whole, streamed and with tools, on the fast path too; and a request that OpenAI
refuses with a 429 is served by Azure in the same request."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests import secrets_registry
from tests.conftest import SECRETS, Stack
from tests.fakes import FakeAzure, FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
AZURE_KEY = f"azure-resource-key-{os.getpid()}"
secrets_registry.secret("azure resource key", AZURE_KEY)
# model id → deployment name, on the v1 API (`azure`) and on the deployment paths (`azure-classic`)
V1 = {"gpt-6-luna": "luna-prod", "gpt-6.1-terra": "gpt-6.1-terra", "text-embedding-3-small": "embed-small"}
CLASSIC = {"gpt-6.2-astra": "astra"}
API_VERSION = "2024-10-21"
TOOL = {"type": "function", "function": {"name": "weather", "description": "The weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
TOOL_ANSWER = {"id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "luna-prod",
               "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                   "role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeAzure]:
    server = FakeAzure("azure", AZURE_KEY, (*V1.values(), *CLASSIC.values()))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset_azure(azure: FakeAzure) -> None:
    azure.reset()


def azure_providers(azure: FakeAzure) -> dict[str, Any]:
    return {"azure": {"kind": "azure", "endpoint": azure.base_url, "api_key": AZURE_KEY, "deployments": V1},
            "azure-classic": {"kind": "azure", "endpoint": azure.base_url, "api_key": AZURE_KEY,
                              "deployments": CLASSIC, "api_version": API_VERSION}}


@pytest.fixture(scope="module")
def stack(azure: FakeAzure, make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """A team that buys OpenAI's models through Azure alone (no OpenAI key)."""
    return make_module_stack({"discovery": False, "strategy": "none", "providers": azure_providers(azure)})


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)


def only_azure_credential(sent: dict[str, str]) -> bool:
    """The resource's key went, and nothing else that could carry a credential."""
    return sent.get("api-key") == AZURE_KEY and "authorization" not in sent and "x-api-key" not in sent


def test_the_fake_refuses_what_azure_refuses(azure: FakeAzure) -> None:
    body = {"model": "luna-prod", "messages": CHAT}
    keyless = httpx.post(azure.base_url + "/openai/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {AZURE_KEY}"})
    assert keyless.status_code == 401 and keyless.json()["error"]["code"] == "401"
    versionless = httpx.post(azure.base_url + "/openai/deployments/astra/chat/completions", json=body,
                             headers={"api-key": AZURE_KEY})
    assert versionless.status_code == 404
    unknown = httpx.post(azure.base_url + "/openai/v1/chat/completions", json={**body, "model": "gpt-6-luna"},
                         headers={"api-key": AZURE_KEY})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DeploymentNotFound"
    assert not azure.requests


def test_the_openai_sdk_is_served_by_the_deployment_on_the_v1_api(stack: Stack, azure: FakeAzure,
                                                                   oa: openai.OpenAI) -> None:
    raw = oa.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "hello from luna-prod"
    assert (raw.headers["x-extproc-provider"], raw.headers["x-extproc-model"]) == ("azure", "gpt-6-luna")
    sent = azure.requests[-1]
    assert sent.path == "/openai/v1/chat/completions" and only_azure_credential(sent.headers)
    assert sent.json()["model"] == "luna-prod"  # Azure's v1 API takes the deployment's name


def test_a_stream_and_a_tool_call_on_azure(stack: Stack, azure: FakeAzure, oa: openai.OpenAI) -> None:
    chunks = list(oa.chat.completions.create(model="gpt-6-luna", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from luna-prod"
    assert only_azure_credential(azure.requests[-1].headers) and azure.requests[-1].json()["stream"] is True

    azure.script(200, body=json.dumps(TOOL_ANSWER).encode())
    answer = oa.chat.completions.create(model="gpt-6-luna", messages=CHAT, tools=[TOOL])  # type: ignore[arg-type,list-item]
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, json.loads(call.function.arguments)) == ("weather", {"city": "Paris"})  # type: ignore[union-attr]
    assert azure.requests[-1].json()["tools"] == [TOOL]


def test_responses_and_embeddings_go_to_the_v1_api(stack: Stack, azure: FakeAzure, oa: openai.OpenAI) -> None:
    response = oa.responses.create(model="gpt-6-luna", input="hi")
    assert response.output_text == "hello from luna-prod"
    assert azure.requests[-1].path == "/openai/v1/responses"
    vectors = oa.embeddings.create(model="text-embedding-3-small", input="hi")
    assert vectors.data[0].embedding == [0.1, 0.2]
    sent = azure.requests[-1]
    assert (sent.path, sent.json()["model"]) == ("/openai/v1/embeddings", "embed-small")


def test_a_deployment_path_carries_the_api_version(stack: Stack, azure: FakeAzure, oa: openai.OpenAI) -> None:
    answer = oa.chat.completions.create(model="gpt-6.2-astra", messages=CHAT)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "hello from gpt-6.2-astra"
    chunks = list(oa.chat.completions.create(model="gpt-6.2-astra", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from gpt-6.2-astra"
    for sent in azure.requests:
        assert sent.path == f"/openai/deployments/astra/chat/completions?api-version={API_VERSION}"
        assert only_azure_credential(sent.headers)


def test_the_anthropic_sdk_on_an_azure_model_is_translated_to_the_deployment(stack: Stack, azure: FakeAzure) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="client-own-key", max_retries=0)
    message = client.messages.create(model="gpt-6-luna", max_tokens=64, messages=CHAT)  # type: ignore[arg-type]
    assert message.content[0].text == "hello from luna-prod"  # type: ignore[union-attr]
    sent = azure.requests[-1]
    assert sent.path == "/openai/v1/chat/completions" and sent.json()["model"] == "luna-prod"
    assert only_azure_credential(sent.headers)


@pytest.mark.parametrize("model", ["gpt-6.1-terra", "gpt-6.2-astra"])
def test_a_key_request_for_a_listed_model_goes_fast(stack: Stack, azure: FakeAzure, model: str) -> None:
    def chat() -> httpx.Response:
        return httpx.post(stack.url + "/v1/chat/completions", json={"model": model, "messages": CHAT},
                          headers={"authorization": "Bearer client-own-key"})

    def fast() -> httpx.Response | None:
        answer = chat()
        return answer if answer.headers.get("x-extproc-route", "").endswith("fast") else None

    assert chat().status_code == 200  # the full path's (or a fast one's, when an earlier test asked for it)
    answer = eventually(fast, f"a request for {model} goes fast")
    assert answer.status_code == 200 and answer.headers["x-extproc-provider"].startswith("azure")
    sent = azure.requests[-1]
    assert only_azure_credential(sent.headers) and sent.json() == {"model": model, "messages": CHAT}
    assert sent.path == ("/openai/v1/chat/completions" if model in V1
                         else f"/openai/deployments/astra/chat/completions?api-version={API_VERSION}")


def test_a_429_from_openai_is_served_by_azure_in_the_same_request(
        azure: FakeAzure, fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack({"discovery": False, "strategy": "none", "fast_path": False, "providers": {
        "openai": {"base_url": fakes["openai"].base_url, "api_key": SECRETS["openai"]}, **azure_providers(azure)}})
    fakes["openai"].script(429, {"retry-after": "30"})
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "hello from luna-prod"
    assert (raw.headers["x-extproc-attempts"], raw.headers["x-extproc-provider"]) == ("2", "azure")
    assert fakes["openai"].requests[-1].headers["authorization"] == f"Bearer {SECRETS['openai']}"
    assert "api-key" not in fakes["openai"].requests[-1].headers  # Azure's key never went to OpenAI
    assert only_azure_credential(azure.requests[-1].headers)
