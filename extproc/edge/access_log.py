"""The access-log edge: Envoy's per-attempt upstream log entries (gRPC ALS) → learning, and, with accounting,
its log of the answers it served by itself (the fast path) → usage records.

Envoy writes one entry per attempt, in small batches; each carries the attempt's
`x-extproc-attempt` request header, so any processor process can learn from any entry. Learning is
best-effort by nature: Envoy drops entries rather than slow requests down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import struct_pb2

from extproc import tracing
from extproc.core.failures import CUT
from extproc.core.headers import (
    API_HEADER,
    ATTEMPT_COUNT_HEADER,
    ATTEMPT_HEADER,
    CLIENT_HEADER,
    PROVIDER_HEADER,
    ROUTE_HEADER,
)
from extproc.core.providers import Api
from extproc.edge.ext_proc import check_token
from extproc.fast.routes import (
    ANSWERS_LOG,
    HEAD_KEY,
    MODEL_KEY,
    NAMESPACE,
    STREAM_KEY,
    STREAM_NAMESPACE,
    TAIL_KEY,
    USAGE_NAMESPACE,
)
from extproc.request.gateway import Gateway
from extproc.request.learning import failure_of, learn_attempt
from extproc.usage.account import Account, Answer
from extproc.usage.tokens import Usage, document_of_keys, usage_of_document, usage_of_stream_ends

log = logging.getLogger("extproc.request")


def account_entry(gateway: Gateway, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
    """The usage record of an answer Envoy served by itself (the fast path): the one the router-level exchange
    would have written, charged to the client key Envoy checked (its name, from Envoy's api_key_auth)."""
    if not entry.response.response_code.value:  # the client went before any answer: none was served to it
        return
    try:
        api = Api(entry.request.request_headers.get(API_HEADER, ""))
    except ValueError:
        return
    common = entry.common_properties
    start = common.start_time.ToNanoseconds() / 1e9
    metadata = common.metadata.filter_metadata
    asked = metadata[NAMESPACE].fields if NAMESPACE in metadata else {}
    model = asked[MODEL_KEY].string_value if MODEL_KEY in asked else ""
    streamed = STREAM_KEY in asked and asked[STREAM_KEY].bool_value
    usage = _streamed_usage(api, metadata) if streamed else usage_of_document(
        api, document_of_keys(_logged_usage(metadata)))
    client = gateway.runtime.current.settings.clients.named(entry.request.request_headers.get(CLIENT_HEADER, ""))
    trace = tracing.parent_of(entry.request.request_headers)
    Account(entry.request.request_id or "-", start, client, requested=model, trace=trace,
            endpoint=tracing.endpoint_of(entry.request.path) if trace else "").close(
        gateway.accounting, gateway.runtime.current.registry, api.value, _logged_answer(entry, start, streamed),
        start + common.time_to_last_downstream_tx_byte.ToNanoseconds() / 1e9, usage)


def _logged_answer(entry: accesslog_pb2.HTTPAccessLogEntry, start: float, streamed: bool) -> Answer:
    """How the answer went: a stream cut once it had begun is recorded as the relay records one (`CUT`'s status),
    never as a success. Health learns the cut from the attempt's own entry in the upstream log (`learn_entry`),
    not from this one: once."""
    common, headers = entry.common_properties, entry.request.request_headers
    first = common.time_to_first_upstream_rx_byte
    began = entry.response.response_code.value
    status = CUT.status if began < 400 and _cut(common.response_flags) else began
    return Answer(status, headers.get(ATTEMPT_HEADER, ""),
                  headers.get(PROVIDER_HEADER, ""), headers.get(ROUTE_HEADER, ""),
                  start + first.ToNanoseconds() / 1e9 if common.HasField("time_to_first_upstream_rx_byte") else None,
                  streamed=streamed and began < 400)


def _cut(flags: accesslog_pb2.ResponseFlags) -> bool:
    """The upstream reset, closed or broke the answer: once it had begun, the client's stream was reset."""
    return bool(flags.upstream_remote_reset or flags.upstream_connection_termination or flags.upstream_protocol_error)


def _streamed_usage(api: Api, metadata: Mapping[str, struct_pb2.Struct]) -> Usage | None:
    """What a fast stream's answer reports, read from the ends the route's Lua kept (`stream_ends.lua`)."""
    if STREAM_NAMESPACE not in metadata:
        return None
    ends = metadata[STREAM_NAMESPACE].fields
    return usage_of_stream_ends(api, *(ends[k].string_value.encode() if k in ends else b""
                                       for k in (HEAD_KEY, TAIL_KEY)))


def _logged_usage(metadata: Mapping[str, struct_pb2.Struct]) -> dict[str, object]:
    """What Envoy read of the answer at `ANSWER_USAGE_KEYS`, by dotted path."""
    if USAGE_NAMESPACE not in metadata:
        return {}
    return {k: getattr(v, v.WhichOneof("kind") or "null_value") for k, v in metadata[USAGE_NAMESPACE].fields.items()}


def learn_entry(gateway: Gateway, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
    attempt = entry.request.request_headers.get(ATTEMPT_HEADER)
    if not attempt:
        return
    headers = dict(entry.response.response_headers)  # only those the log config names: retry-after, windows
    try:
        count = int(entry.request.request_headers.get(ATTEMPT_COUNT_HEADER, "1"))
    except ValueError:
        return
    status = entry.response.response_code.value
    flags = entry.common_properties.response_flags
    failure = failure_of(status, headers, flags.upstream_request_timeout, _cut(flags))
    learn_attempt(gateway.runtime, gateway.secrets, attempt, status, headers, entry.request.request_id or "-", count,
                  failure)


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self._gateway = gateway
        self._token = token.encode() if token is not None else None

    async def StreamAccessLogs(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: grpc.aio.ServicerContext
    ) -> als_pb2.StreamAccessLogsResponse:
        await check_token(context, self._token, "access-log")
        read = learn_entry
        async for message in request_iterator:
            if message.HasField("identifier"):  # the stream's first message says which log it is
                read = account_entry if message.identifier.log_name == ANSWERS_LOG else learn_entry
            for entry in message.http_logs.log_entry:
                try:
                    read(self._gateway, entry)
                except Exception:  # one bad entry must not end the stream (and with it, learning or accounting)
                    log.exception("error while reading an access-log entry")
        return als_pb2.StreamAccessLogsResponse()


def add_to_server(server: grpc.aio.Server, gateway: Gateway, token: str | None) -> None:
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogService(gateway, token), server)
