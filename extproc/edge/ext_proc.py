"""The ext_proc edge: Envoy's messages → exchange events, the exchange's actions → ProcessingResponses.

One gRPC stream per HTTP request and one exchange per stream; no state is shared between streams. The
edge also checks that the stream comes from our Envoy (the processor token). Nothing else lives here.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from extproc import tracing
from extproc.bootstrap.names import RECEIVED_AT, ROUTER_MODE
from extproc.core.admission import waited
from extproc.core.headers import (
    ATTEMPT_HEADER,
    ATTEMPT_ROLE,
    PROCESSOR_TOKEN_HEADER,
    PROVIDER_HEADER,
    REAUTH_ROLE,
    ROLE_HEADER,
    ROUTE_HEADER,
)
from extproc.edge import upstream
from extproc.edge.messages import answer_stream, configured_mode, header_map
from extproc.request.actions import CONTINUE, Action
from extproc.request.attempt import AttemptExchange
from extproc.request.exchange import Exchange
from extproc.request.gateway import Gateway, Slot
from extproc.request.reauth import ReauthExchange

log = logging.getLogger("extproc.request")


async def _event(exchange: Exchange, slot: Slot, kind: str, request: pb.ProcessingRequest) -> Action:
    if kind == "request_body":  # routed: the request's place is its relayed stream's now, if it streams
        try:
            return await exchange.request_body(request.request_body.body)
        finally:
            slot.release()
    if kind == "request_headers":
        return exchange.request_headers(header_map(request.request_headers), request.request_headers.end_of_stream,
                                        _waited(request, time.time()))
    if kind == "response_headers":  # asked for per request, with accounting
        return exchange.response_headers(header_map(request.response_headers, _ANSWER_HEADERS),
                                         request.response_headers.end_of_stream)
    if kind == "response_body":
        return exchange.response_body(request.response_body.body, request.response_body.end_of_stream)
    return CONTINUE  # trailers: nothing to do here (Envoy is not configured to send them)


def _waited(request: pb.ProcessingRequest, now: float) -> float | None:
    """How long ago Envoy received the request (the `request.time` attribute the router-level filter sends)."""
    for attributes in request.attributes.values():  # keyed by the filter's name: there is one
        sent = attributes.fields.get(RECEIVED_AT)
        if sent is not None:
            return waited(sent.string_value, now)
    return None


_ANSWER_HEADERS = frozenset({":status", "content-type", "content-encoding", ATTEMPT_HEADER, PROVIDER_HEADER,
                             ROUTE_HEADER})


async def check_token(context: grpc.aio.ServicerContext, token: bytes | None, what: str = "ext_proc") -> dict[str, str]:
    """The stream's metadata, once it has shown our Envoy's token (a stream without it gets nothing)."""
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    if token is not None and not hmac.compare_digest(metadata.get(PROCESSOR_TOKEN_HEADER, "").encode(), token):
        log.warning("refused an %s stream without the processor token (from %s)", what, context.peer())
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "missing or wrong processor token")
    return metadata


ROUTER = configured_mode(ROUTER_MODE)


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """Every ext_proc role on one service: the router-level stream, and (by their role metadata) an attempt's
    and a login's retry after a 401."""

    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self._gateway = gateway
        self._token = token.encode() if token is not None else None

    async def Process(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        metadata = await check_token(context, self._token)
        role = metadata.get(ROLE_HEADER)
        trace = tracing.parent_of(metadata)  # Envoy's span for this stream, with tracing
        if role == ATTEMPT_ROLE:
            answers = upstream.process(AttemptExchange(self._gateway, trace), request_iterator)
        elif role == REAUTH_ROLE:
            answers = upstream.process_reauth(ReauthExchange(self._gateway), request_iterator)
        else:  # the router-level stream: open until routed (processor.max_requests)
            with self._gateway.holding() as slot:
                event = functools.partial(_event, Exchange(self._gateway, trace), slot)
                async for answer in answer_stream(request_iterator, event, ROUTER):
                    yield answer
            return
        async for answer in answers:
            yield answer


def add_to_server(server: grpc.aio.Server, gateway: Gateway, token: str | None) -> None:
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(gateway, token), server)
