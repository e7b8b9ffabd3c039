"""Envoy's own replies (no healthy upstream, connect failure, timeout, body too large, an undecodable body, an
HTTP request it refused, processor down) in the client's API envelope, one mapper per family from the table
in `extproc.formats`.

They are matched by Envoy's response flags, by 413, 415 and 502 (the processor-failure status), which the
processor's own immediate responses never carry, and by response code details that are not the processor's,
so those (already in the right shape) stay as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from extproc.bootstrap.names import REQUEST_CODINGS, T
from extproc.core.errors import ClientError
from extproc.core.headers import API_HEADER
from extproc.core.providers import Api
from extproc.formats import FAMILIES, Family

_ENVOY_FAILURE_FLAGS = ["UH", "UF", "UO", "NR", "URX", "UT", "UR", "UC", "DC", "LH"]
PROCESSOR_DOWN = "The gateway could not reach its processor; nothing was sent upstream."
PROCESSOR_DOWN_STATUS = 502
UNDECODABLE_STATUS = 415
# Envoy refuses these itself, before the processor sees a byte: client errors, each with the envelope's kind.
_CLIENT_ERRORS = (
    ClientError(413, "request_too_large", "The request body is larger than this gateway accepts "
                "(max_request_bytes); nothing was sent upstream.", retryable=False),
    ClientError(UNDECODABLE_STATUS, "unsupported_content_encoding", "The request body's content-encoding is not one "
                f"the gateway reads; send it uncompressed or as {', '.join(REQUEST_CODINGS)}.", retryable=False),
)
# Any other 4xx Envoy answers itself (its HTTP codec's: a bad request line or header, 431, 426; a path it cannot
# normalise): Envoy's status, in the envelope. The processor's own replies carry details `extproc…`.
_REFUSED = ClientError(400, "invalid_http_request", "The gateway refused this HTTP request as sent "
                       "(%RESPONSE_CODE_DETAILS%); nothing was sent upstream.")
_REFUSED_BY_ENVOY = {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
    "@type": T + "extensions.access_loggers.filters.cel.v3.ExpressionFilter",
    "expression": "response.code >= 400 && response.code < 500 && !response.code_details.startsWith('extproc')"}}}


def _status(code: int) -> dict[str, Any]:
    equal = {"op": "EQ", "value": {"default_value": code, "runtime_key": "_"}}
    return {"status_code_filter": {"comparison": equal}}


def _client_error(family: Family, err: ClientError) -> dict[str, Any]:
    """The family's own error body for a client error, as Envoy's json_format."""
    body: dict[str, Any] = orjson.loads(family.error_body(err))
    return body


def _refused(family: Family) -> dict[str, Any]:
    """As `_client_error`, with the status Envoy chose wherever the envelope repeats it."""
    body = _client_error(family, _REFUSED)
    if family.api is Api.GEMINI:
        body["error"]["code"] = "%RESPONSE_CODE%"
    return body


def local_reply_config(by_api_header: bool = False) -> dict[str, Any]:
    """Mappers that pick the envelope by the API the processor names in `x-extproc-api` (an attempt may have
    rewritten the path to the provider's), else by the client's path; `by_api_header` alone behind the
    attempts' internal listeners, where the path is always the provider's."""
    envoy_failure = {"response_flag_filter": {"flags": _ENVOY_FAILURE_FLAGS}}
    # Families that claim paths first; OpenAI's envelope is the default and goes last, unfiltered.
    families = sorted(FAMILIES.values(), key=lambda f: f.api is Api.OPENAI)
    replies: list[tuple[dict[str, Any], Callable[[Family], dict[str, Any]]]] = [
        *((_status(err.status), functools.partial(_client_error, err=err)) for err in _CLIENT_ERRORS),
        (_REFUSED_BY_ENVOY, _refused),
        (_status(PROCESSOR_DOWN_STATUS), lambda family: family.local_reply(PROCESSOR_DOWN)),
        (envoy_failure, lambda family: family.local_reply("%LOCAL_REPLY_BODY%")),
    ]
    mappers = []
    for failure, body in replies:
        for family in families:
            named = {"header_filter": {"header": {"name": API_HEADER, "string_match": {"exact": family.api.value}}}}
            by_path = {"and_filter": {"filters": [
                {"header_filter": {"header": {"name": API_HEADER, "present_match": False}}},
                {"header_filter": {"header": {"name": ":path", "string_match": {"safe_regex": {
                    "regex": family.paths}}}}}]}}
            family_filter = named if by_api_header else {"or_filter": {"filters": [named, by_path]}}
            match = failure if family.api is Api.OPENAI else {"and_filter": {"filters": [failure, family_filter]}}
            mappers.append({"filter": match, "body_format_override": {
                "json_format": body(family), "content_type": "application/json"}})
    return {"mappers": mappers}
