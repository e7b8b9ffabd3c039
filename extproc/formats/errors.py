"""ClientError → each client API's own error envelope, and the bodies of Envoy's own replies in it."""

from __future__ import annotations

from typing import Any

import orjson

from extproc.core.errors import ClientError

_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                 404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
                 415: "invalid_request_error",
                 429: "rate_limit_error", 502: "server_error", 503: "service_unavailable_error", 504: "server_error",
                 529: "service_unavailable_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    415: "invalid_request_error",
                    429: "rate_limit_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error"}
# 405 as grpc-gateway answers a wrong HTTP method (UNIMPLEMENTED); 413 and 415 as Google's APIs refuse a body;
# 502 (no answer came from upstream) as the unavailability it is.
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                  500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}


def openai_error(err: ClientError) -> bytes:
    return orjson.dumps({"error": {"message": err.message, "type": _OPENAI_TYPES.get(err.status, "api_error"),
                                   "param": err.param, "code": err.kind}})


def anthropic_error(err: ClientError) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(err.status, "api_error"),
                                                    "message": err.message}})


def gemini_error(err: ClientError) -> bytes:
    return orjson.dumps({"error": {"code": err.status, "message": err.message,
                                   "status": _GOOGLE_STATUS.get(err.status, "UNKNOWN")}})


# A stream that failed after its first byte: the last event, in the client's own streaming format.

def openai_stream_error(err: ClientError, endpoint: str, response_id: str = "") -> bytes:
    if endpoint == "responses":  # the Responses API ends a failed answer with response.failed (Codex reads it)
        # The SDKs hold the response to the id it was created with: a failed event must carry the same one.
        doc = {"type": "response.failed", "response": {"id": response_id or None, "object": "response",
                                                       "status": "failed", "error": {"code": err.kind,
                                                                                     "message": err.message}}}
        return b"event: response.failed\ndata: " + orjson.dumps(doc) + b"\n\n"
    return b"data: " + openai_error(err) + b"\n\n"  # the SDKs raise on a chunk that carries `error`


def anthropic_stream_error(err: ClientError, endpoint: str) -> bytes:
    return b"event: error\ndata: " + anthropic_error(err) + b"\n\n"


def gemini_stream_error(err: ClientError, endpoint: str) -> bytes:
    return b"data: " + gemini_error(err) + b"\n\n"


# Envoy's own replies (upstream unreachable, processor down, …): `message` may hold Envoy format operators.

def openai_local_reply(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": "%RESPONSE_CODE_DETAILS%"}}


def anthropic_local_reply(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "api_error", "message": message}}


def gemini_local_reply(message: str) -> dict[str, Any]:
    return {"error": {"code": "%RESPONSE_CODE%", "message": message, "status": "UNAVAILABLE"}}


def error_headers(err: ClientError) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if err.retry_after is not None:
        headers["retry-after"] = str(err.retry_after)
    if err.retryable is False:
        headers["x-should-retry"] = "false"  # the OpenAI and Anthropic SDKs honour it
    return headers
