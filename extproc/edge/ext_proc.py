"""The ext_proc stream loop: Envoy messages in, the gateway's plain decisions out as ProcessingResponses.

One stream per HTTP request: headers → body (buffered) → upstream response headers. The stream's own
locals carry the decision from the body answer to the response; no state is shared between streams.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from extproc.bootstrap import PROCESSOR_TOKEN_HEADER
from extproc.core.resolve import Decision
from extproc.formats.gemini import SseUnwrapper, unwrap_codeassist
from extproc.gateway import Forward, Gateway, Reply, internal_error

log = logging.getLogger("extproc.request")

_CONTINUE_REQUEST_HEADERS = pb.ProcessingResponse(request_headers=pb.HeadersResponse())
_CONTINUE_RESPONSE_HEADERS = pb.ProcessingResponse(response_headers=pb.HeadersResponse())
_CONTINUE_REQUEST_BODY = pb.ProcessingResponse(request_body=pb.BodyResponse())
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_WANTED_RESPONSE_HEADERS = frozenset({":status", "retry-after", "retry-after-ms", "content-type",
                                      "content-encoding"})
_BUFFER_RESPONSE = pb.ProcessingResponse(
    response_headers=pb.HeadersResponse(),
    mode_override=processing_mode_pb2.ProcessingMode(response_body_mode=processing_mode_pb2.ProcessingMode.BUFFERED))
_STREAM_RESPONSE = pb.ProcessingResponse(
    response_headers=pb.HeadersResponse(response=pb.CommonResponse(
        header_mutation=pb.HeaderMutation(remove_headers=["content-length"]))),
    mode_override=processing_mode_pb2.ProcessingMode(response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED))


def header_map(headers: pb.HttpHeaders, wanted: frozenset[str] | None = None) -> dict[str, str]:
    """The headers of an ext_proc header message, or only the wanted ones (Envoy sends values as raw bytes)."""
    found = {}
    for h in headers.headers.headers:
        if wanted is None or h.key in wanted:
            found[h.key] = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return found


def _header_options(headers: Mapping[str, str], action: int) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=action)
            for k, v in headers.items()]


def forward_response(forward: Forward) -> pb.ProcessingResponse:
    mutation = pb.HeaderMutation(set_headers=_header_options(forward.set_headers, _OVERWRITE),
                                 remove_headers=list(forward.remove_headers))
    common = pb.CommonResponse(header_mutation=mutation, clear_route_cache=True)
    if forward.body is not None:
        common.body_mutation.body = forward.body
    return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))


def immediate_response(reply: Reply) -> pb.ProcessingResponse:
    details = f"extproc_{reply.error.kind}" if reply.error else "extproc"
    return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=reply.status),
        headers=pb.HeaderMutation(set_headers=_header_options(reply.headers, _OVERWRITE)),
        body=reply.body,
        details=details,
    ))


class ExternalProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def Process(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        gateway = self._gateway
        expected = gateway.settings.processor_token
        if expected is not None:
            sent = dict(context.invocation_metadata() or ()).get(PROCESSOR_TOKEN_HEADER, "")
            if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
                log.warning("refused an ext_proc stream without the processor token (from %s)", context.peer())
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "missing or wrong processor token")
        path = method = request_id = ""
        client_headers: dict[str, str] = {}
        forward: Forward | None = None
        sse: SseUnwrapper | None = None
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                client_headers = header_map(request.request_headers)
                path, method = client_headers.get(":path", ""), client_headers.get(":method", "")
                request_id = client_headers.get("x-request-id", "-")
                reply = gateway.on_headers(method, path, request.request_headers.end_of_stream)
                if reply is not None:
                    _log_reply(request_id, method, path, reply)
                    yield immediate_response(reply)
                    return
                yield _CONTINUE_REQUEST_HEADERS
            elif kind == "request_body":
                try:
                    outcome = await gateway.on_body(path, request.request_body.body, client_headers)
                except Exception:  # a bug must cost one request a clear 500, never a silent reset
                    log.exception("error rid=%s while routing %s", request_id, path.partition("?")[0])
                    outcome = internal_error(path)
                if isinstance(outcome, Reply):
                    _log_reply(request_id, method, path, outcome)
                    yield immediate_response(outcome)
                    return
                forward, decision = outcome, outcome.decision
                log.info("route rid=%s requested=%r resolved=%s provider=%s why=%s credential=%s",
                         request_id, decision.requested, decision.model.id, decision.provider.name,
                         decision.why, decision.credential.id)
                yield forward_response(outcome)
            elif kind == "response_headers":
                if forward is None:
                    yield _CONTINUE_RESPONSE_HEADERS
                    continue
                headers = header_map(request.response_headers, _WANTED_RESPONSE_HEADERS)
                try:
                    _observe(gateway, request_id, forward.decision, headers)
                except Exception:  # learning failed; the response itself still goes to the client
                    log.exception("error rid=%s while learning from the response", request_id)
                encoded = headers.get("content-encoding", "identity").lower() != "identity"
                if forward.unwrap is None or request.response_headers.end_of_stream or encoded:
                    yield _CONTINUE_RESPONSE_HEADERS
                elif headers.get("content-type", "").startswith("text/event-stream"):
                    sse = SseUnwrapper()
                    yield _STREAM_RESPONSE
                else:
                    yield _BUFFER_RESPONSE
            elif kind == "request_trailers":
                yield pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
            elif kind == "response_body":
                yield _unwrapped_body(request.response_body, sse)
            elif kind == "response_trailers":
                yield pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def _unwrapped_body(body: pb.HttpBody, sse: SseUnwrapper | None) -> pb.ProcessingResponse:
    """Code Assist's answer with its envelope removed: per SSE event when streamed, else whole."""
    if sse is not None:
        common = pb.CommonResponse()
        common.body_mutation.body = sse.feed(body.body, body.end_of_stream)
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))
    unwrapped = unwrap_codeassist(body.body)
    common = pb.CommonResponse(header_mutation=pb.HeaderMutation(set_headers=_header_options(
        {"content-length": str(len(unwrapped))}, _OVERWRITE)))
    common.body_mutation.body = unwrapped
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))


def _observe(gateway: Gateway, request_id: str, decision: Decision, headers: dict[str, str]) -> None:
    try:
        status = int(headers.get(":status", "0"))
    except ValueError:
        return
    block = gateway.on_response(decision, status, headers)
    if block is not None:
        until = "restart or re-login" if block.until == float("inf") else \
            datetime.fromtimestamp(block.until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.warning("upstream rid=%s status=%d model=%s provider=%s credential=%s %s until %s: %s",
                    request_id, status, decision.model.id, decision.provider.name, decision.credential.id,
                    block.kind, until, block.reason)
    else:
        log.debug("upstream rid=%s status=%d", request_id, status)


def _log_reply(request_id: str, method: str, path: str, reply: Reply) -> None:
    if reply.error is None:
        log.debug("reply rid=%s %s %s status=%d", request_id, method, path, reply.status)
    else:
        log.info("reject rid=%s %s %r status=%d kind=%s: %s", request_id, method, path.partition("?")[0],
                 reply.status, reply.error.kind, reply.error.message)
