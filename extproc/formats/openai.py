"""OpenAI Chat Completions, legacy Completions, Responses and Embeddings."""

from __future__ import annotations

import re

from extproc.core.providers import Api
from extproc.core.view import RequestView
from extproc.formats.base import JsonObject, body_model, measure, positive_int


def _common_needs(doc: JsonObject, images: int) -> set[str]:
    needs = set()
    if images:
        needs.add("vision")
    if doc.get("tools") or doc.get("functions"):
        needs.add("tools")
    if doc.get("stream") is True:
        needs.add("streaming")
    reasoning = doc.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else doc.get("reasoning_effort")
    if (reasoning or doc.get("reasoning_effort")) and effort != "none":
        needs.add("reasoning")
    return needs


def read_chat(doc: JsonObject, _: re.Match[str]) -> RequestView:
    model = body_model(doc)
    tokens, images = measure(doc.get("messages") or doc.get("prompt") or [])
    needs = _common_needs(doc, images)
    fmt = doc.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        needs.add("structured_output")
    return RequestView(Api.OPENAI, model, "chat", frozenset(needs), tokens,
                       positive_int(doc, "max_completion_tokens", "max_tokens"))


def read_responses(doc: JsonObject, _: re.Match[str]) -> RequestView:
    model = body_model(doc)
    tokens, images = measure([doc.get("input") or [], doc.get("instructions") or ""])
    needs = _common_needs(doc, images)
    text = doc.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict) and text["format"].get("type") == "json_schema":
        needs.add("structured_output")
    return RequestView(Api.OPENAI, model, "chat", frozenset(needs), tokens, positive_int(doc, "max_output_tokens"),
                       same_provider=bool(doc.get("previous_response_id") or doc.get("conversation")))


def read_embeddings(doc: JsonObject, _: re.Match[str]) -> RequestView:
    model = body_model(doc)
    tokens, _images = measure(doc.get("input") or [])
    return RequestView(Api.OPENAI, model, "embedding", frozenset(), tokens)
