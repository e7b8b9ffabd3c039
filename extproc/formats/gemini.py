"""Gemini's native API: the model lives in the path, `/{version}/models/{model}:{method}`."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.core.view import RequestView
from extproc.formats.base import JsonObject, checked_model_id, measure, positive_int

_SCHEMA_KEYS = ("responseSchema", "response_schema", "responseJsonSchema", "response_json_schema")


def unwrapped(doc: Any) -> Any:
    """Code Assist wraps Gemini's answer in {"response": …}: the Gemini answer inside, or the doc as it is."""
    return doc["response"] if isinstance(doc, dict) and isinstance(doc.get("response"), dict) else doc


def _path_model(match: re.Match[str]) -> str:
    model = unquote(match.group("model"))
    if not model.strip():
        raise ClientError(400, "missing_model", "The request path names no model: use /v1beta/models/{model}:{method}.")
    return checked_model_id(model)


def read_generate(doc: JsonObject, match: re.Match[str]) -> RequestView:
    """generateContent, streamGenerateContent and countTokens."""
    model = _path_model(match)
    system = doc.get("systemInstruction") or doc.get("system_instruction") or ""
    tokens, images = measure([doc.get("contents") or [], system])
    needs = set()
    if images:
        needs.add("vision")
    if doc.get("tools"):
        needs.add("tools")
    if match.string.endswith(":streamGenerateContent"):
        needs.add("streaming")
    config = doc.get("generationConfig") or doc.get("generation_config") or {}
    max_output = None
    if isinstance(config, dict):
        thinking = config.get("thinkingConfig") or config.get("thinking_config")
        budget = thinking.get("thinkingBudget", thinking.get("thinking_budget")) if isinstance(thinking, dict) else 0
        if thinking and budget != 0:  # a budget of 0 turns thinking off
            needs.add("reasoning")
        if any(config.get(k) for k in _SCHEMA_KEYS):
            needs.add("structured_output")
        max_output = positive_int(config, "maxOutputTokens", "max_output_tokens")
    return RequestView(Api.GEMINI, model, "chat", frozenset(needs), tokens, max_output)


def read_embed(doc: JsonObject, match: re.Match[str]) -> RequestView:
    model = _path_model(match)
    tokens, _ = measure(doc.get("content") or [])
    return RequestView(Api.GEMINI, model, "embedding", frozenset(), tokens)


def read_batch_embed(doc: JsonObject, match: re.Match[str]) -> RequestView:
    model = _path_model(match)
    requests = doc.get("requests")
    if not isinstance(requests, list):
        raise ClientError(400, "invalid_request", "batchEmbedContents takes a 'requests' list.")
    tokens, _ = measure(requests)
    return RequestView(Api.GEMINI, model, "embedding", frozenset(), tokens)


def path_only(doc: JsonObject, model_id: str) -> bool:
    return False  # the model lives in the path alone


def rewrite_body_model(doc: JsonObject, model_id: str) -> bool:
    """embedContent may name the model in the body too; it must match the path."""
    if "model" not in doc or doc["model"] == f"models/{model_id}":
        return False
    doc["model"] = f"models/{model_id}"
    return True


def rewrite_batch_models(doc: JsonObject, model_id: str) -> bool:
    """batchEmbedContents names the model in each request too, and it must match the path."""
    changed = False
    for request in doc.get("requests") or []:
        if isinstance(request, dict) and request.get("model") != f"models/{model_id}":
            request["model"] = f"models/{model_id}"
            changed = True
    return changed
