"""Providers' model-list answers → Listed records, and merging them with the catalog."""

from __future__ import annotations

import datetime as dt

import pytest

from extproc.core.catalog import ModelSpec
from extproc.discovery.merge import merge_discovered
from extproc.discovery.parse import Listed, ListError, parse_model_list


def test_openai_style() -> None:
    body = b'{"object":"list","data":[{"id":"gpt-x","created":1750000000},{"id":"text-embedding-x"},{"nope":1},7]}'
    models, cursor = parse_model_list("openai", body)
    assert models == [Listed("gpt-x", dt.date(2025, 6, 15)), Listed("text-embedding-x", mode="embedding")]
    assert cursor is None


def test_anthropic_style_pages_by_last_id() -> None:
    body = b'{"data":[{"id":"claude-x","created_at":"2025-09-29T00:00:00Z","type":"model"}],' \
           b'"has_more":true,"last_id":"claude-x"}'
    models, cursor = parse_model_list("anthropic", body)
    assert models == [Listed("claude-x", dt.date(2025, 9, 29))] and cursor == "claude-x"


def test_gemini_style_keeps_callable_models_and_pages_by_token() -> None:
    body = (b'{"models":[{"name":"models/gemini-x","inputTokenLimit":1000,"outputTokenLimit":100,'
            b'"supportedGenerationMethods":["generateContent","countTokens"]},'
            b'{"name":"models/embed-x","supportedGenerationMethods":["embedContent"]},'
            b'{"name":"models/aqa","supportedGenerationMethods":["generateAnswer"]}],"nextPageToken":"p2"}')
    models, cursor = parse_model_list("gemini", body)
    assert models == [Listed("gemini-x", None, 1000, 100, "chat"), Listed("embed-x", mode="embedding")]
    assert cursor == "p2"


@pytest.mark.parametrize(("style", "body"), [
    ("openai", b"<html>"), ("openai", b"[1,2]"), ("openai", b'{"models":[]}'), ("gemini", b'{"models":{}}'),
])
def test_malformed_answers_are_list_errors(style: str, body: bytes) -> None:
    with pytest.raises(ListError):
        parse_model_list(style, body)


def test_merge_adds_unknown_models_only() -> None:
    catalog = (ModelSpec("known", "p", input_price=2.0, capabilities=frozenset({"tools", "streaming"})),)
    merged = merge_discovered(catalog, {"p": (Listed("known"), Listed("new", context_window=10)),
                                        "q": (Listed("known"),)})
    assert merged[0] is catalog[0]
    assert [(m.provider, m.id, m.discovered) for m in merged[1:]] == [("p", "new", True), ("q", "known", True)]
    assert merged[1].context_window == 10 and merged[1].capabilities == frozenset({"streaming"})


def test_millisecond_and_absurd_timestamps() -> None:
    body = b'{"data":[{"id":"ms","created":1750000000000},{"id":"absurd","created":99999999999999999}]}'
    models, _ = parse_model_list("openai", body)
    assert models[0].created == dt.date(2025, 6, 15) and models[1].created is None


def test_aliases_are_not_taken_over_by_a_listed_model() -> None:
    merged = merge_discovered((), {"p": (Listed("my-alias"), Listed("other"))}, reserved=frozenset({"my-alias"}))
    assert [m.id for m in merged] == ["other"]
