"""Gemini's native API: the model lives in the path, `/{version}/models/{model}:{method}`."""

from __future__ import annotations

import re
from urllib.parse import unquote

from extproc.core.errors import ClientError
from extproc.core.resolve import RequestView
from extproc.formats.base import ParsedRequest, decode_object, measure, positive_int
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
        return ParsedRequest(RequestView(Api.GEMINI, model, "embedding", frozenset(), tokens), doc, path_model=True)
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
        if config.get("thinkingConfig") or config.get("thinking_config"):
            needs.add("reasoning")
        if any(config.get(k) for k in _SCHEMA_KEYS):
            needs.add("structured_output")
        max_output = positive_int(config, "maxOutputTokens", "max_output_tokens")
    view = RequestView(Api.GEMINI, model, "chat", frozenset(needs), tokens, max_output)
    return ParsedRequest(view, doc, path_model=True)
