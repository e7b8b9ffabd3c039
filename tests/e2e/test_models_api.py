"""The models API on Envoy's direct route (gRPC-JSON transcoding), driven with the openai SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack, provider_config
from tests.fakes import FakeProvider

MODELS = [
    {"id": "api-a", "provider": "openai", "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
     "capabilities": ["tools", "streaming"], "created": "2025-05-01"},
    {"id": "api-b", "provider": "groq", "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
     "capabilities": ["tools", "streaming"]},
    {"id": "api-m", "provider": "mistral", "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
     "capabilities": ["tools", "streaming"]},
]


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes, without=("mistral",)), "models": MODELS,
                              "aliases": {"quick": "api-b"}, "discovery": False, "strategy": "capability-match"})


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


def test_sdk_lists_every_model(oa: openai.OpenAI) -> None:
    models = {m.id: m for m in oa.models.list()}
    assert {"api-a", "api-b", "api-m", "gpt-6-luna"} <= set(models)
    a = models["api-a"]
    assert (a.object, a.owned_by, a.created) == ("model", "openai", 1746057600)
    extra = a.model_extra or {}
    assert extra["available"] is True and extra["context_window"] == 100000
    assert extra["input_price_per_million"] == 1.0 and extra["capabilities"] == ["streaming", "tools"]
    m = (models["api-m"].model_extra or {})
    assert m["available"] is False and m["unavailable_reason"] == "no credential"


def test_raw_json_is_what_openai_clients_expect(stack: Stack) -> None:
    doc = httpx.get(stack.url + "/v1/models").json()
    assert doc["object"] == "list"
    first = doc["data"][0]
    assert isinstance(first["created"], int) and isinstance(first["available"], bool)
    assert isinstance(first["capabilities"], list)


def test_available_lists_only_usable_models(stack: Stack) -> None:
    ids = {m["id"] for m in httpx.get(stack.url + "/v1/models/available").json()["data"]}
    assert "api-a" in ids and "api-m" not in ids and "claude-sonnet-5-5" in ids


def test_retrieve_by_id_with_slashes_and_by_alias(oa: openai.OpenAI) -> None:
    assert oa.models.retrieve("groq/openai/gpt-oss-20b").owned_by == "groq"
    assert oa.models.retrieve("quick").id == "api-b"
    detail = oa.models.retrieve("api-m")
    fallbacks = (detail.model_extra or {})["fallbacks"]
    assert 1 <= len(fallbacks) <= 5 and "api-m" not in fallbacks


def test_unknown_model_is_404_in_openai_envelope(oa: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oa.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    assert "'no-such-model' does not exist" in caught.value.message
    raw = httpx.get(stack.url + "/v1/models/no-such-model")
    assert raw.headers["content-type"] == "application/json"
    assert raw.json()["error"]["type"] == "invalid_request_error"


def test_models_route_skips_the_processor_for_llm_paths(oa: openai.OpenAI, fakes: dict[str, FakeProvider]) -> None:
    """Gemini's POST /v1/models/{m}:generateContent is not the models API: it still routes to a provider."""
    response = httpx.post(str(oa.base_url).rstrip("/") + "/models/gemini-3.8-flash:generateContent",
                          json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert response.status_code == 200
    assert fakes["gemini"].wait_for(1)[0].path == "/v1/models/gemini-3.8-flash:generateContent"


def test_no_grpc_internals_in_http_answers(stack: Stack) -> None:
    response = httpx.get(stack.url + "/v1/models")
    assert not [h for h in response.headers if h.startswith("grpc-")]


# ---------------------------------------------------------------- each SDK's own models list

def test_the_anthropic_sdk_lists_pages_and_retrieves_in_anthropics_shape(stack: Stack) -> None:
    import anthropic

    an = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    first = an.models.list(limit=2)
    assert len(first.data) == 2 and first.has_more and first.first_id == first.data[0].id
    every = [m.id for m in an.models.list(limit=2)]  # the SDK follows after_id page by page
    assert len(every) == len(set(every)) and "claude-haiku-5-5" in every and "api-a" in every  # OpenAI's: translated
    assert "text-embedding-3-small" not in every  # embeddings are never translated
    created = [m.created_at for m in an.models.list(limit=100).data]
    assert created == sorted(created, reverse=True)  # newest first, as Anthropic orders them
    one = an.models.retrieve("claude-haiku-5-5")
    assert (one.type, one.id, one.display_name, one.max_input_tokens) == \
        ("model", "claude-haiku-5-5", "Claude Haiku 5.5", 1000000)
    with pytest.raises(anthropic.NotFoundError) as missing:
        an.models.retrieve("no-such-model")
    assert isinstance(missing.value.body, dict) and missing.value.body["error"]["type"] == "not_found_error"


def test_the_gemini_sdk_lists_and_gets_in_geminis_shape(stack: Stack) -> None:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types

    gm = genai.Client(api_key="unused", http_options=genai_types.HttpOptions(base_url=stack.url))
    listed = list(gm.models.list(config={"page_size": 3}))  # pages through nextPageToken
    names = [m.name for m in listed]
    assert len(names) == len(set(names)) > 3 and "models/gemini-3.8-flash" in names
    assert "models/api-a" in names and "models/text-embedding-3-small" not in names  # chat translated, not embeddings
    translated = next(m for m in listed if m.name == "models/api-a")
    assert "countTokens" not in (translated.supported_actions or [])  # a count is never translated
    got = gm.models.get(model="gemini-3.8-flash")
    assert got.name == "models/gemini-3.8-flash" and got.input_token_limit == 1048576
    assert "generateContent" in (got.supported_actions or [])
    with pytest.raises(genai_errors.ClientError) as missing:
        gm.models.get(model="no-such-model")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    raw = httpx.get(f"{stack.url}/v1beta/models", params={"pageSize": 2})
    assert raw.status_code == 200 and len(raw.json()["models"]) == 2 and raw.json()["nextPageToken"] == "2"


def test_an_id_a_providers_prefixes_pass_through_resolves_in_the_model_detail(stack: Stack) -> None:
    card = httpx.get(f"{stack.url}/v1/models/gpt-99-preview").json()
    assert (card["id"], card["provider"]) == ("gpt-99-preview", "openai")
    assert httpx.get(f"{stack.url}/v1/models/zzz-unclaimed").status_code == 404
