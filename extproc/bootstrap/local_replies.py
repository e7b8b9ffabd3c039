"""Envoy's own replies (a provider that refused, reset or did not answer in time, no healthy upstream, body too
large, an undecodable body, an HTTP request it refused, processor down) in the client's API envelope, one
mapper per family from the table in `extproc.formats`.

They are matched by Envoy's response flags, by 413, 415 and 502 (the processor-failure status), which the
processor's own immediate responses never carry, and by response code details that are not the processor's,
so those (already in the right shape) stay as they are. An attempt that got no answer from its provider
(`core.failures`) is told as the gateway's own error naming the provider, with its kind in a header the
attempts' access log carries to learning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from extproc.bootstrap.failover import ATTEMPTS_CLUSTER
from extproc.bootstrap.names import REQUEST_CODINGS, T, provider_cluster_name
from extproc.core.admission import MESSAGE_TIMEOUT, overloaded
from extproc.core.errors import ClientError
from extproc.core.failures import CUT, REFUSED, RESET, TIMEOUT, UNREACHABLE, UpstreamFailure
from extproc.core.headers import API_HEADER, FAILURE_HEADER, PROVIDER_HEADER
from extproc.core.providers import Api
from extproc.formats import FAMILIES, Family

_ENVOY_FAILURE_FLAGS = ["UH", "UF", "UO", "NR", "URX", "UT", "UR", "UC", "UPE", "DC", "LH"]
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


def _cel(expression: str) -> dict[str, Any]:
    """A local-reply filter written in CEL (Envoy's request, response, upstream and xds attributes)."""
    return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
        "@type": T + "extensions.access_loggers.filters.cel.v3.ExpressionFilter", "expression": expression}}}


_REFUSED_BY_ENVOY = _cel("response.code >= 400 && response.code < 500 && !response.code_details.startsWith('extproc')")
# The ext_proc filter's own 502 when it cannot reach the processor (details `ext_proc_error…`); any other 502 (a
# reset answer, the processor's own reply) says what it is.
_PROCESSOR_DOWN = _cel(f"response.code == {PROCESSOR_DOWN_STATUS} && response.code_details.startsWith('ext_proc')")
# The processor did not answer a message within MESSAGE_TIMEOUT: Envoy's own 504 with no body, details
# `ext_proc_error_per-message_timeout_exceeded` and no response flag (Envoy 1.40). The processor was too busy: the
# same 503 with retry-after its admission gate answers.
_PROCESSOR_LATE = _cel("response.code == 504 && response.code_details.startsWith('ext_proc_error')")
_LATE = overloaded(f"no answer from its processor within {MESSAGE_TIMEOUT:g} s")


# An attempt that got no answer from its provider, where Envoy meets it: a provider's listener (behind the
# attempts, one per provider, its virtual host named after it) sees the refusal, the reset or no address, from
# the provider's cluster (never the relay's: those failures are the processor's); the attempts' router sees no
# first byte in time, and the request still names the provider it tried last. The timeout is the one Envoy's
# router gave the attempt, in a header it sets on each.
_TO_PROVIDER = f"xds.cluster_name.startsWith('{provider_cluster_name('')}')"
_IN_LISTENER = "%CEL(xds.virtual_host_name)%"
_SECONDS = "%CEL(double(request.headers['x-envoy-expected-rq-timeout-ms']) / 1000.0)%"
# (behind the attempts, flags, CEL, failure, the provider's name)
_UPSTREAM_FAILURES: tuple[tuple[bool, list[str], str, UpstreamFailure, str], ...] = (
    (True, ["UF"], f"{_TO_PROVIDER} && upstream.transport_failure_reason.contains('refused')", REFUSED, _IN_LISTENER),
    (True, ["UF", "UH", "DF"], _TO_PROVIDER, UNREACHABLE, _IN_LISTENER),
    (True, ["UC", "UR"], _TO_PROVIDER, RESET, _IN_LISTENER),
    (False, ["UT"], f"xds.cluster_name == '{ATTEMPTS_CLUSTER}'", TIMEOUT, f"%REQ({PROVIDER_HEADER})%"),
    (False, ["UR", "UC", "UPE"], f"xds.cluster_name == '{ATTEMPTS_CLUSTER}'", CUT, f"%REQ({PROVIDER_HEADER})%"),
)


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


def _upstream_failure(family: Family, failure: UpstreamFailure, provider: str) -> dict[str, Any]:
    return _client_error(family, ClientError(failure.status, failure.kind, failure.message(provider, _SECONDS)))


def _told(failure: UpstreamFailure) -> dict[str, Any]:
    """The failure's own status, and its kind in a header the attempts' access log reads."""
    return {"status_code": failure.status, "headers_to_add": [{
        "header": {"key": FAILURE_HEADER, "value": failure.kind}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}


def _retry_after(err: ClientError) -> dict[str, Any]:
    """The refusal's own status and its retry-after."""
    return {"status_code": err.status, "headers_to_add": [{"header": {
        "key": "retry-after", "value": str(err.retry_after)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}


def local_reply_config(by_api_header: bool = False) -> dict[str, Any]:
    """Mappers that pick the envelope by the API the processor names in `x-extproc-api` (an attempt may have
    rewritten the path to the provider's), else by the client's path; `by_api_header` alone behind the
    attempts' internal listeners, where the path is always the provider's (and each meets its own upstream
    failures: a provider's listener the refusals and resets, the client's listener the timeouts)."""
    envoy_failure = {"response_flag_filter": {"flags": _ENVOY_FAILURE_FLAGS}}
    # Families that claim paths first; OpenAI's envelope is the default and goes last, unfiltered.
    families = sorted(FAMILIES.values(), key=lambda f: f.api is Api.OPENAI)
    replies: list[tuple[dict[str, Any], Callable[[Family], dict[str, Any]], dict[str, Any]]] = [
        *((_status(err.status), functools.partial(_client_error, err=err), {}) for err in _CLIENT_ERRORS),
        (_REFUSED_BY_ENVOY, _refused, {}),
        (_PROCESSOR_DOWN, lambda family: family.local_reply(PROCESSOR_DOWN), {}),
        (_PROCESSOR_LATE, functools.partial(_client_error, err=_LATE), _retry_after(_LATE)),
        *(({"and_filter": {"filters": [{"response_flag_filter": {"flags": flags}}, _cel(where)]}},
           functools.partial(_upstream_failure, failure=failure, provider=provider), _told(failure))
          for behind, flags, where, failure, provider in _UPSTREAM_FAILURES if behind == by_api_header),
        (envoy_failure, lambda family: family.local_reply("%LOCAL_REPLY_BODY%"), {}),
    ]
    mappers = []
    for failure, body, extra in replies:
        for family in families:
            named = {"header_filter": {"header": {"name": API_HEADER, "string_match": {"exact": family.api.value}}}}
            by_path = {"and_filter": {"filters": [
                {"header_filter": {"header": {"name": API_HEADER, "present_match": False}}},
                {"header_filter": {"header": {"name": ":path", "string_match": {"safe_regex": {
                    "regex": family.paths}}}}}]}}
            family_filter = named if by_api_header else {"or_filter": {"filters": [named, by_path]}}
            match = failure if family.api is Api.OPENAI else {"and_filter": {"filters": [failure, family_filter]}}
            mappers.append({"filter": match, **extra, "body_format_override": {
                "json_format": body(family), "content_type": "application/json"}})
    return {"mappers": mappers}
