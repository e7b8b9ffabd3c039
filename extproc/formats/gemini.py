"""Gemini's native API: the model lives in the path, `/{version}/models/{model}:{method}`."""

from __future__ import annotations

import re
from urllib.parse import unquote

import orjson

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.core.resolve import Decision, RequestView
from extproc.formats.base import (
    Endpoint,
    JsonObject,
    ParsedRequest,
    checked_model_id,
    decode_object,
    measure,
    positive_int,
)

_EMBEDDING_METHODS = frozenset({"embedContent", "batchEmbedContents"})
_SCHEMA_KEYS = ("responseSchema", "response_schema", "responseJsonSchema", "response_json_schema")


def parse_gemini(body: bytes, match: re.Match[str]) -> ParsedRequest:
    model = unquote(match.group("model"))
    if not model.strip():
        raise ClientError(400, "missing_model", "The request path names no model: use /v1beta/models/{model}:{method}.")
    model = checked_model_id(model)
    method = match.group("method")
    doc = decode_object(body)
    if method in _EMBEDDING_METHODS:
        requests = doc.get("requests")
        if method == "batchEmbedContents" and not isinstance(requests, list):
            raise ClientError(400, "invalid_request", "batchEmbedContents takes a 'requests' list.")
        tokens, _ = measure(doc.get("content") or requests or [])
        rewrite = _rewrite_batch_models if method == "batchEmbedContents" else _rewrite_body_model
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


def _rewrite_body_model(doc: JsonObject, model_id: str) -> bool:
    """embedContent may name the model in the body too; it must match the path."""
    if "model" not in doc or doc["model"] == f"models/{model_id}":
        return False
    doc["model"] = f"models/{model_id}"
    return True


def _rewrite_batch_models(doc: JsonObject, model_id: str) -> bool:
    """batchEmbedContents names the model in each request too, and it must match the path."""
    changed = False
    for request in doc.get("requests") or []:
        if isinstance(request, dict) and request.get("model") != f"models/{model_id}":
            request["model"] = f"models/{model_id}"
            changed = True
    return changed


def codeassist_request(endpoint: Endpoint, decision: Decision, doc: JsonObject,
                       project: str | None) -> tuple[str, JsonObject]:
    """Code Assist's shape of a Gemini call: POST /v1internal:{method} with {model, project, request}."""
    method = endpoint.match.group("method")
    query = "alt=sse" if "alt=sse" in endpoint.query.split("&") else ""  # else a JSON array, as asked
    wrapped: JsonObject = {"model": decision.model.id, "request": doc}
    if project:
        wrapped["project"] = project
    return f"/v1internal:{method}" + (f"?{query}" if query else ""), wrapped


def unwrap_codeassist(payload: bytes) -> bytes:
    """Code Assist answers {"response": {…}, …}; Gemini clients expect the inner object."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if isinstance(doc, dict) and isinstance(doc.get("response"), dict):
        return orjson.dumps(doc["response"])
    if isinstance(doc, list):  # a JSON array of chunks (streamGenerateContent without alt=sse)
        return orjson.dumps([d["response"] if isinstance(d, dict) and "response" in d else d for d in doc])
    return payload


class SseUnwrapper:
    """Unwraps Code Assist's SSE events as they stream, holding back an event split across chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes, end: bool) -> bytes:
        data = self._pending + chunk
        events = _EVENT_END.split(data)
        self._pending = b"" if end else events.pop()
        out = []
        for event in events:
            if not event.strip():
                continue
            lines = [line.rstrip(b"\r") for line in event.split(b"\n")]
            lines = [b"data: " + unwrap_codeassist(line[5:].strip()) if line.startswith(b"data:") else line
                     for line in lines]
            out.append(b"\r\n".join(lines) + b"\r\n\r\n")
        return b"".join(out)


_EVENT_END = re.compile(rb"\r?\n\r?\n")
