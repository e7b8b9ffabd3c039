"""Client keys through real Envoy, sent the way each official SDK sends its API key."""

from __future__ import annotations

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

TEAM, CLAUDE_ONLY, LIMITED = "team-key-0123456789abcdef", "claude-only-key-0123456789", "limited-key-0123456789ab"
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes), "discovery": False, "clients": {"keys": [
        {"name": "team", "key": TEAM}, {"name": "claude-only", "key": CLAUDE_ONLY, "models": ["claude-*"]},
        {"name": "limited", "key": LIMITED, "rpm": 2}]}})


def test_each_sdk_with_a_valid_key_is_served_and_the_key_never_reaches_a_provider(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0)
    assert oa.chat.completions.create(model="gpt-5-mini", messages=CHAT).choices
    an = anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0)
    assert an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT).content
    gm = genai.Client(api_key=TEAM, http_options=genai_types.HttpOptions(base_url=stack.url))
    assert gm.models.generate_content(model="gemini-3.8-flash", contents="hi").text
    sent = [r for name in ("openai", "anthropic", "gemini") for r in fakes[name].requests]
    assert len(sent) == 3 and all(TEAM not in str(r.headers) and TEAM not in r.path for r in sent)
    assert fakes["openai"].requests[0].headers["authorization"] == f"Bearer {SECRETS['openai']}"
    assert "client=team" in stack.logs() and TEAM not in stack.logs()


def test_a_missing_or_wrong_key_gets_401_in_the_clients_envelope_and_nothing_goes_upstream(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    with pytest.raises(openai.AuthenticationError) as oa_failed:
        openai.OpenAI(base_url=stack.url + "/v1", api_key="wrong-key", max_retries=0).chat.completions.create(
            model="gpt-5-mini", messages=CHAT)
    assert oa_failed.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as an_failed:
        anthropic.Anthropic(base_url=stack.url, api_key="wrong-key", max_retries=0).messages.create(
            model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    assert an_failed.value.status_code == 401
    assert isinstance(an_failed.value.body, dict) and an_failed.value.body["error"]["type"] == "authentication_error"
    bare = httpx.post(stack.url + "/v1beta/models/gemini-3.8-flash:generateContent", json={"contents": []})
    assert bare.status_code == 401 and bare.json()["error"]["status"] == "UNAUTHENTICATED"
    assert all(not fake.requests for fake in fakes.values())


def test_a_key_limited_to_some_models_gets_403_for_others(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=CLAUDE_ONLY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as failed:
        oa.chat.completions.create(model="gpt-5-mini", messages=CHAT)
    assert failed.value.code == "model_not_allowed"
    an = anthropic.Anthropic(base_url=stack.url, api_key=CLAUDE_ONLY, max_retries=0)
    assert an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT).content
    assert not fakes["openai"].requests and len(fakes["anthropic"].requests) == 1


def test_a_key_over_its_rpm_gets_429_with_retry_after_in_its_envelope_and_nothing_goes_upstream(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    an = anthropic.Anthropic(base_url=stack.url, api_key=LIMITED, max_retries=0)
    for _ in range(2):
        assert an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT).content
    with pytest.raises(anthropic.RateLimitError) as failed:
        an.messages.create(model="claude-haiku-5-5", max_tokens=5, messages=CHAT)
    assert isinstance(failed.value.body, dict) and failed.value.body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(failed.value.response.headers["retry-after"]) <= 120
    refused = httpx.post(stack.url + "/v1/chat/completions", headers={"authorization": f"Bearer {LIMITED}"},
                         json={"model": "gpt-5-mini", "messages": CHAT})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(fakes["anthropic"].requests) == 2 and not fakes["openai"].requests
    # Other keys count on their own.
    assert anthropic.Anthropic(base_url=stack.url, api_key=TEAM, max_retries=0).messages.create(
        model="claude-haiku-5-5", max_tokens=5, messages=CHAT).content
    assert "client=limited" in stack.logs() and LIMITED not in stack.logs()


def test_the_models_api_and_readyz_detail_need_a_key_and_healthz_does_not(stack: Stack) -> None:
    refused = httpx.get(stack.url + "/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(stack.url + "/v1/models/gpt-5-mini").status_code == 401
    listed = openai.OpenAI(base_url=stack.url + "/v1", api_key=TEAM, max_retries=0).models.list()
    assert any(m.id == "claude-haiku-5-5" for m in listed.data)
    assert httpx.get(stack.url + "/readyz").json() == {"status": "ready", "detail": "redacted: send a client key"}
    detail = httpx.get(stack.url + "/readyz", headers={"authorization": f"Bearer {TEAM}"}).json()
    assert detail["models"] > 0 and detail["shared_state"].startswith("local")
    assert httpx.get(stack.url + "/healthz").status_code == 200
