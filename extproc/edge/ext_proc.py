"""The ext_proc edge: Envoy's messages → exchange events, the exchange's actions → ProcessingResponses.

One gRPC stream per HTTP request and one exchange per stream; no state is shared between streams. The
edge also checks that the stream comes from our Envoy (the processor token). Nothing else lives here.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from extproc.core.headers import PROCESSOR_TOKEN_HEADER
from extproc.exchange import CONTINUE, Action, Continue, Exchange, Gateway, Mutate, Reply

log = logging.getLogger("extproc.request")

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_BODY_MODES = {"buffered": processing_mode_pb2.ProcessingMode.BUFFERED,
               "streamed": processing_mode_pb2.ProcessingMode.STREAMED}
# The answer to each message kind when the action is Continue, built once.
_CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}


def header_map(headers: pb.HttpHeaders, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """The headers of an ext_proc header message, or only the wanted ones (Envoy sends values as raw bytes)."""
    found = {}
    for h in headers.headers.headers:
        if wanted is None or h.key in wanted:
            found[h.key] = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return found


def _header_options(headers: Mapping[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()),
                                       append_action=_OVERWRITE) for k, v in headers.items()]


def to_response(kind: str, action: Action) -> pb.ProcessingResponse:
    """The ProcessingResponse that carries an action as the answer to a message of this kind."""
    if isinstance(action, Continue):
        return _CONTINUE[kind]
    if isinstance(action, Reply):
        details = f"extproc_{action.error.kind}" if action.error else "extproc"
        return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=action.status),
            headers=pb.HeaderMutation(set_headers=_header_options(action.headers)),
            body=action.body, details=details))
    return _mutation(kind, action)


def _mutation(kind: str, action: Mutate) -> pb.ProcessingResponse:
    answer = pb.ProcessingResponse()
    common = getattr(answer, kind).response  # HeadersResponse and BodyResponse both carry a CommonResponse
    common.SetInParent()  # filled in place: no copies of a body that may be megabytes
    common.clear_route_cache = action.clear_route_cache
    if action.set_headers:
        common.header_mutation.set_headers.extend(_header_options(action.set_headers))
    if action.remove_headers:
        common.header_mutation.remove_headers.extend(action.remove_headers)
    if action.body is not None:
        common.body_mutation.body = action.body
    if action.body_mode is not None:
        answer.mode_override.response_body_mode = _BODY_MODES[action.body_mode]
    return answer


async def _event(exchange: Exchange, kind: str, request: pb.ProcessingRequest) -> Action:
    if kind == "request_headers":
        return exchange.request_headers(header_map(request.request_headers), request.request_headers.end_of_stream)
    if kind == "request_body":
        return await exchange.request_body(request.request_body.body)
    if kind == "response_headers":
        headers = header_map(request.response_headers, Exchange.WANTED_RESPONSE_HEADERS)
        return exchange.response_headers(headers, request.response_headers.end_of_stream)
    if kind == "response_body":
        return exchange.response_body(request.response_body.body, request.response_body.end_of_stream)
    return CONTINUE  # trailers: nothing to do


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway, token: str | None) -> None:
        self._gateway = gateway
        self._token = token.encode() if token is not None else None

    async def Process(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        if self._token is not None:
            sent = dict(context.invocation_metadata() or ()).get(PROCESSOR_TOKEN_HEADER, "")
            if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), self._token):
                log.warning("refused an ext_proc stream without the processor token (from %s)", context.peer())
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "missing or wrong processor token")
        exchange = self._gateway.exchange()
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            action = await _event(exchange, kind, request)
            yield to_response(kind, action)
            if isinstance(action, Reply):
                return


def add_to_server(server: grpc.aio.Server, gateway: Gateway, token: str | None) -> None:
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(gateway, token), server)
