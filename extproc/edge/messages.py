"""ext_proc protobuf ⇄ plain data, shared by both edges: header maps in, actions out as ProcessingResponses."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2

from extproc.metrics import MESSAGE_SECONDS
from extproc.request.actions import Action, Continue, Mutate, Reply

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


Event = Callable[[str, pb.ProcessingRequest], Awaitable[Action]]


async def answer_stream(requests: AsyncIterator[pb.ProcessingRequest], event: Event,
                        mode: processing_mode_pb2.ProcessingMode) -> AsyncIterator[pb.ProcessingResponse]:
    """One answer per message, each the action its event returned; a reply ends the stream, and so does the
    answer after which Envoy has nothing more to send (`mode` is what the filter sends unless an answer
    overrides it). Ended by us, the stream closes cleanly; left open, Envoy cancels it when the request ends,
    and a cancelled gRPC stream costs the processor memory it never gets back. The time each answer took is
    the processor's own latency metric."""
    sure = True
    async for request in requests:
        started = time.perf_counter()
        kind = request.WhichOneof("request")
        action = await event(kind, request)
        answer = to_response(kind, action)
        MESSAGE_SECONDS.labels(kind).observe(time.perf_counter() - started)
        yield answer
        if isinstance(action, Reply):
            return
        if answer.HasField("mode_override"):
            if not kind.endswith("_headers"):  # Envoy takes an override with headers only: unsure, stay open
                sure = False
            mode = answer.mode_override  # the whole mode, as Envoy takes it
        if sure and not expects_more(kind, request, mode):
            return


_Mode = processing_mode_pb2.ProcessingMode
_PHASES = ("request_headers", "request_body", "request_trailers", "response_headers", "response_body",
           "response_trailers")


def configured_mode(fields: Mapping[str, str]) -> processing_mode_pb2.ProcessingMode:
    """A filter's processing mode, from the bootstrap's own (names.ROUTER_MODE, names.UPSTREAM_MODE)."""
    return _Mode(**{k: _Mode.HeaderSendMode.Value(v) if k.endswith(("header_mode", "trailer_mode"))
                    else _Mode.BodySendMode.Value(v) for k, v in fields.items()})


def expects_more(kind: str, request: pb.ProcessingRequest, mode: processing_mode_pb2.ProcessingMode) -> bool:
    """Whether Envoy may still send a message on this stream once `kind` is answered. Envoy reads a header or
    trailer mode of DEFAULT as SEND for headers and SKIP for trailers, and sends a body in chunks (any mode
    but BUFFERED) until its end."""
    ended = bool(getattr(getattr(request, kind), "end_of_stream", False))
    if kind.endswith("_body") and mode_of(mode, kind) not in (_Mode.NONE, _Mode.BUFFERED) and not ended:
        return True  # more chunks of this body
    later = _PHASES[_PHASES.index(kind) + 1:]
    if kind.startswith("response"):
        return not ended and any(sends(mode, phase) for phase in later)
    if ended or kind == "request_trailers":  # the request ended with this message: only the answer's parts come
        later = tuple(phase for phase in later if phase.startswith("response"))
    return any(sends(mode, phase) for phase in later)


def mode_of(mode: processing_mode_pb2.ProcessingMode, kind: str) -> int:
    return int(getattr(mode, kind.replace("headers", "header").replace("trailers", "trailer") + "_mode"))


def sends(mode: processing_mode_pb2.ProcessingMode, kind: str) -> bool:
    value = mode_of(mode, kind)
    if kind.endswith("_body"):
        return value != int(_Mode.NONE)
    if kind.endswith("_headers"):
        return value != int(_Mode.SKIP)  # DEFAULT sends
    return value == int(_Mode.SEND)  # trailers: DEFAULT skips


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
        if kind.startswith("request"):
            answer.mode_override.request_body_mode = _BODY_MODES[action.body_mode]
        else:
            answer.mode_override.response_body_mode = _BODY_MODES[action.body_mode]
    if action.answer_headers:
        answer.mode_override.response_header_mode = processing_mode_pb2.ProcessingMode.SEND
    for namespace, values in action.dynamic_metadata.items():  # field by field: Struct.update is slow
        fields = answer.dynamic_metadata.fields[namespace].struct_value.fields
        for key, value in values.items():
            fields[key].string_value = value
    return answer
