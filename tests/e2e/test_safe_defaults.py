"""A request is answered by the model it names, or by one the config puts in its place: with only a local
OpenAI-compatible model keyed, a cloud model asked for through any SDK is refused (503, in that SDK's envelope),
never silently answered by the local one; an explicit fallback or strategy still replaces it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import PROVIDERS, Stack, provider_config
from tests.fakes import FakeProvider

MY_LLAMA = {"id": "my-llama", "provider": "local", "context_window": 32768, "capabilities": ["tools", "streaming"]}
HI = [{"role": "user", "content": "hi"}]
ANSWER = "hello from my-llama"  # what the local fake says, whoever asked


@pytest.fixture(scope="module")
def local() -> Iterator[FakeProvider]:
    server = FakeProvider("local")
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset_local(local: FakeProvider) -> None:
    local.reset()


def local_only(fakes: dict[str, FakeProvider], local: FakeProvider, **more: Any) -> dict[str, Any]:
    """The built-in providers without a key (their fakes, so nothing leaves the machine), and one keyed local
    OpenAI-compatible server."""
    providers = {**provider_config(fakes, without=PROVIDERS),
                 "local": {"base_url": local.base_url, "apis": {"openai": "/v1"}, "api_key": "local-secret"}}
    return {"providers": providers, "models": [MY_LLAMA], "discovery": False, **more}


@pytest.fixture
def default(fakes: dict[str, FakeProvider], local: FakeProvider,
            make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """No strategy set; explicit fallbacks for two models only."""
    return make_stack(local_only(fakes, local, fallbacks={"gpt-4o-mini": ["my-llama"],
                                                                 "claude-haiku-5-5": ["my-llama"]}))


@pytest.fixture
def matching(fakes: dict[str, FakeProvider], local: FakeProvider,
             make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_stack(local_only(fakes, local, strategy="capability-match"))


def clients(stack: Stack) -> tuple[openai.OpenAI, anthropic.Anthropic, genai.Client]:
    return (openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0),
            anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0),
            genai.Client(api_key="unused", http_options=genai_types.HttpOptions(base_url=stack.url)))


def test_by_default_no_sdk_is_answered_by_another_model(default: Stack, local: FakeProvider,
                                                        fakes: dict[str, FakeProvider]) -> None:
    oa, an, gm = clients(default)
    with pytest.raises(openai.APIStatusError) as refused_openai:
        oa.chat.completions.create(model="gpt-6-luna", messages=HI)
    assert refused_openai.value.status_code == 503
    error = refused_openai.value.body
    assert isinstance(error, dict) and error["code"] == "no_credentials"
    assert "'gpt-6-luna'" in error["message"] and "the config names no fallback for it" in error["message"]

    with pytest.raises(anthropic.APIStatusError) as refused_anthropic:
        an.messages.create(model="claude-sonnet-5-5", max_tokens=16, messages=HI)
    assert refused_anthropic.value.status_code == 503
    body = refused_anthropic.value.body
    assert isinstance(body, dict) and body["type"] == "error" and "'claude-sonnet-5-5'" in body["error"]["message"]

    with pytest.raises(genai_errors.ServerError) as refused_gemini:
        gm.models.generate_content(model="gemini-3.8-flash", contents="hi")
    assert refused_gemini.value.code == 503 and "'gemini-3.8-flash'" in (refused_gemini.value.message or "")

    # The local model still serves what it is asked for, and the fallbacks the config names: only those reached it.
    assert oa.chat.completions.create(model="my-llama", messages=HI).choices[0].message.content == ANSWER
    assert local.wait_for(1)[0].json()["model"] == "my-llama"
    assert len(local.requests) == 1 and all(not fake.requests for fake in fakes.values())


def test_an_explicit_fallback_still_replaces_its_model(default: Stack, local: FakeProvider) -> None:
    oa, an, _ = clients(default)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert raw.parse().choices[0].message.content == ANSWER
    assert (raw.headers["x-extproc-model"], raw.headers["x-extproc-route"]) == ("my-llama", "fallback:chain")
    answered = an.messages.with_raw_response.create(model="claude-haiku-5-5", max_tokens=16, messages=HI)
    assert answered.parse().content[0].text == ANSWER
    assert answered.headers["x-extproc-route"].startswith("fallback:chain; translated")
    assert [r.json()["model"] for r in local.wait_for(2)] == ["my-llama", "my-llama"]
    # The model detail lists no fallback the config did not name.
    assert httpx.get(f"{default.url}/v1/models/gpt-4o-mini").json()["fallbacks"] == ["my-llama"]
    assert httpx.get(f"{default.url}/v1/models/gpt-6-luna").json()["fallbacks"] == []


def test_a_strategy_the_config_sets_answers_every_sdk_with_the_model_it_picks(matching: Stack,
                                                                              local: FakeProvider) -> None:
    oa, an, gm = clients(matching)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=HI)
    assert raw.parse().choices[0].message.content == ANSWER
    assert raw.headers["x-extproc-route"] == "fallback:capability-match"
    assert an.messages.create(model="claude-sonnet-5-5", max_tokens=16,
                              messages=HI).content[0].text == ANSWER
    assert gm.models.generate_content(model="gemini-3.8-flash", contents="hi").text == ANSWER
    records = [matching.usage_record(sent.headers["x-request-id"]) for sent in local.wait_for(3)]
    assert [r["requested_model"] for r in records] == ["gpt-6-luna", "claude-sonnet-5-5", "gemini-3.8-flash"]
    assert records[0]["route"] == "fallback:capability-match"
    assert all(r["route"].startswith("fallback:capability-match; translated") for r in records[1:])

