"""Gemini's native API: the model lives in the path, `/{version}/models/{model}:{method}`."""

from __future__ import annotations

import re
from urllib.parse import unquote

from extproc.core.errors import ClientError
from extproc.core.resolve import RequestView
from extproc.formats.base import JsonObject, ParsedRequest, decode_object, measure, positive_int
from extproc.providers import Api

_EMBEDDING_METHODS = frozenset({"embedContent", "batchEmbedContents"})
_SCHEMA_KEYS = ("responseSchema", "response_schema", "responseJsonSchema", "response_json_schema")


def parse_gemini(body: bytes, match: re.Match[str]) -> ParsedRequest:
    model = unquote(match.group("model"))
    if not model.strip():
        raise ClientError(400, "missing_model", "The request path names no model: use /v1beta/models/{model}:{method}.")
    method = match.group("method")
    doc = decode_object(body)
    if method in _EMBEDDING_METHODS:
        tokens, _ = measure(doc.get("content") or doc.get("requests") or [])
        rewrite = _rewrite_batch_models if method == "batchEmbedContents" else _path_only
        return ParsedRequest(RequestView(Api.GEMINI, model, "embedding", frozenset(), tokens), doc, rewrite)
    system = doc.get("systemInstruction") or doc.get("system_instruction") or ""
    tokens, images = measure([doc.get("contents") or [], system])
    needs = set()
    if images:
        needs.add("vision")
    if doc.get("tools"):
        needs.add("tools")
    if method == "streamGenerateContent":
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
    view = RequestView(Api.GEMINI, model, "chat", frozenset(needs), tokens, max_output)
    return ParsedRequest(view, doc, _path_only)


def _path_only(doc: JsonObject, model_id: str) -> bool:
    return False  # the model lives in the path alone


def _rewrite_batch_models(doc: JsonObject, model_id: str) -> bool:
    """batchEmbedContents names the model in each request too, and it must match the path."""
    changed = False
    for request in doc.get("requests") or []:
        if isinstance(request, dict) and request.get("model") != f"models/{model_id}":
            request["model"] = f"models/{model_id}"
            changed = True
    return changed
