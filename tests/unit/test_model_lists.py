"""Anthropic's and Gemini's models lists from the registry: shapes and pagination."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from extproc.control.model_lists import anthropic_page, gemini_model, gemini_page, native, reachable
from extproc.core.catalog import ModelSpec
from extproc.core.providers import Api
from extproc.core.registry import Registry
from tests.unit.helpers import model, provider, settings

MODELS = [ModelSpec(f"m-{i}", "p", created=dt.date(2025, 1, 1 + i), context_window=1000, max_output_tokens=10)
          for i in range(7)]


def test_anthropic_pages_newest_first_forward_and_back() -> None:
    first = anthropic_page(MODELS, 3, "", "")
    assert [m["id"] for m in first["data"]] == ["m-6", "m-5", "m-4"] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == ("m-6", "m-4")
    seen, after = [], ""
    while True:
        page = anthropic_page(MODELS, 3, after, "")
        seen += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == [f"m-{i}" for i in range(6, -1, -1)]
    back = anthropic_page(MODELS, 2, "", "m-2")
    assert [m["id"] for m in back["data"]] == ["m-4", "m-3"] and back["has_more"]
    assert first["data"][0] == {"type": "model", "id": "m-6", "display_name": "M 6",
                                "created_at": "2025-01-07T00:00:00Z", "max_input_tokens": 1000, "max_tokens": 10}
    assert anthropic_page([], 20, "", "") == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_gemini_pages_by_token_and_names_its_methods() -> None:
    pages, token = [], ""
    while True:
        page = gemini_page(MODELS, 3, token)
        pages.append([m["name"] for m in page["models"]])
        if "nextPageToken" not in page:
            break
        token = page["nextPageToken"]
    assert [len(p) for p in pages] == [3, 3, 1] and pages[0][0] == "models/m-0"
    embed = gemini_model(ModelSpec("text-embedding-9", "gemini", mode="embedding"))
    assert embed["supportedGenerationMethods"] == ["embedContent", "batchEmbedContents"]
    assert "inputTokenLimit" not in embed  # unknown limits are left out, not zero


# Custom providers only (the built-in ones are in the registry too, with their catalog models).
PROVIDERS = {"oai": provider({"openai": "/v1"}, "k"), "anth": provider({"anthropic": "/v1"}, "k", auth="x-api-key"),
             "gem": provider({"gemini": ""}, "k", auth="x-goog-api-key")}
OWN = [model("oai-chat", "oai"), model("oai-embed", "oai", mode="embedding"), model("anth-chat", "anth"),
       model("gem-chat", "gem"), model("gem-embed", "gem", mode="embedding")]


def listed(api: Api, endpoint: str, providers: dict[str, Any] = PROVIDERS, **raw: Any) -> set[str]:
    registry = Registry.build(settings(providers=providers, models=OWN, **raw))
    return {m.qualified for m in reachable(registry, api, endpoint)} & {f"{m['provider']}/{m['id']}" for m in OWN}


@pytest.mark.parametrize(("api", "endpoint", "expected"), [
    # Another API's chat models are served translated; embeddings never are.
    (Api.ANTHROPIC, "messages", {"anth/anth-chat", "oai/oai-chat", "gem/gem-chat"}),
    (Api.GEMINI, "gemini", {"gem/gem-chat", "gem/gem-embed", "oai/oai-chat", "anth/anth-chat"}),
])
def test_each_sdk_lists_every_model_it_could_be_served(api: Api, endpoint: str, expected: set[str]) -> None:
    assert listed(api, endpoint) == expected
    own = {m for m in expected if m.startswith(f"{'anth' if api is Api.ANTHROPIC else 'gem'}/")}
    assert listed(api, endpoint, translation=False) == own
    off = {**PROVIDERS, "oai": {**PROVIDERS["oai"], "translation": False}}
    assert listed(api, endpoint, providers=off) == expected - {"oai/oai-chat"}


def test_a_translated_model_offers_no_token_counting_to_gemini_clients() -> None:
    registry = Registry.build(settings(providers=PROVIDERS, models=OWN))
    models = [m for m in reachable(registry, Api.GEMINI, "gemini") if m.provider in PROVIDERS]
    page = gemini_page(models, 50, "", native(registry, Api.GEMINI, "gemini", models))
    methods = {m["baseModelId"]: m["supportedGenerationMethods"] for m in page["models"]}
    assert methods["gem-chat"] == ["generateContent", "streamGenerateContent", "countTokens"]
    assert methods["oai-chat"] == methods["anth-chat"] == ["generateContent", "streamGenerateContent"]
    assert methods["gem-embed"] == ["embedContent", "batchEmbedContents"]
