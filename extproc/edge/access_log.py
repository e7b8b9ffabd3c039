"""The access-log edge: Envoy's per-attempt upstream log entries (gRPC ALS) → learning.

Envoy writes one entry per attempt, in small batches; each carries the attempt's
`x-extproc-attempt` request header, so any processor process can learn from any entry. Learning is
best-effort by nature: Envoy drops entries rather than slow requests down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from extproc.core.headers import ATTEMPT_COUNT_HEADER, ATTEMPT_HEADER
from extproc.edge.ext_proc import check_token
from extproc.exchange import Gateway
from extproc.learning import learn_attempt

log = logging.getLogger("extproc.request")
def learn_entry(gateway: Gateway, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
    attempt = entry.request.request_headers.get(ATTEMPT_HEADER)
    if not attempt:
        return
    headers = dict(entry.response.response_headers)  # only those the log config names: retry-after, windows
    try:
        count = int(entry.request.request_headers.get(ATTEMPT_COUNT_HEADER, "1"))
    except ValueError:
        return
    learn_attempt(gateway.runtime, gateway.secrets, attempt, entry.response.response_code.value, headers,
                  entry.request.request_id or "-", count)


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self._gateway = gateway
        self._token = token.encode() if token is not None else None

    async def StreamAccessLogs(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: grpc.aio.ServicerContext
    ) -> als_pb2.StreamAccessLogsResponse:
        await check_token(context, self._token, "access-log")
        async for message in request_iterator:
            for entry in message.http_logs.log_entry:
                try:
                    learn_entry(self._gateway, entry)
                except Exception:  # one bad entry must not end the stream (and with it, learning)
                    log.exception("error while learning from an access-log entry")
        return als_pb2.StreamAccessLogsResponse()


def add_to_server(server: grpc.aio.Server, gateway: Gateway, token: str | None) -> None:
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogService(gateway, token), server)
