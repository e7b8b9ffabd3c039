"""The ext_proc edge without sockets: ProcessingRequests in, ProcessingResponses out, a stand-in gRPC context."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from extproc.bootstrap.names import ROUTER_MODE, UPSTREAM_MODE
from extproc.core.headers import PROCESSOR_TOKEN_HEADER, PROVIDER_HEADER
from extproc.edge.ext_proc import ExternalProcessor
from extproc.edge.messages import configured_mode, expects_more, to_response
from extproc.request.actions import CONTINUE, Mutate, Reply
from extproc.request.gateway import Gateway
from extproc.runtime import Runtime
from tests.unit.helpers import model, settings

TOKEN = "t" * 24


class Aborted(Exception):
    pass


class Context:
    """What the processor uses of grpc.aio.ServicerContext: metadata, peer, abort."""

    def __init__(self, token: str | None) -> None:
        self._metadata = ((PROCESSOR_TOKEN_HEADER, token),) if token is not None else ()
        self.aborted: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = code
        raise Aborted(details)


def run(processor: ExternalProcessor, messages: list[pb.ProcessingRequest], context: Context) -> list[Any]:
    async def requests() -> AsyncIterator[pb.ProcessingRequest]:
        for message in messages:
            yield message

    async def collect() -> list[Any]:
        return [r async for r in processor.Process(requests(), context)]

    return asyncio.run(collect())


@pytest.fixture
def processor() -> ExternalProcessor:
    s = settings(providers={"openai": {"api_key": "sk-edge"}}, models=[model("m", "openai")], aliases={"a": "m"})
    return ExternalProcessor(Gateway(Runtime(s)), TOKEN)


def walk(path: str, body: dict[str, Any], status: str = "200") -> list[pb.ProcessingRequest]:
    hdrs = pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=":path", raw_value=path.encode()),
        base_pb2.HeaderValue(key=":method", raw_value=b"POST"),
        base_pb2.HeaderValue(key="x-request-id", raw_value=b"rid-1")]))
    response = pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=":status", raw_value=status.encode())]))
    return [pb.ProcessingRequest(request_headers=hdrs),
            pb.ProcessingRequest(request_body=pb.HttpBody(body=json.dumps(body).encode(), end_of_stream=True)),
            pb.ProcessingRequest(response_headers=response)]


def set_headers(mutation: pb.HeaderMutation) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


def test_a_request_is_three_answers_the_body_one_carries_route_credential_and_rewritten_body(processor):
    answers = run(processor, walk("/v1/chat/completions", {"model": "a", "messages": []}), Context(TOKEN))
    assert [a.WhichOneof("response") for a in answers] == ["request_headers", "request_body", "response_headers"]
    common = answers[1].request_body.response
    assert common.clear_route_cache
    sent = set_headers(common.header_mutation)
    assert sent[PROVIDER_HEADER] == "openai" and sent["authorization"] == "Bearer sk-edge"
    assert json.loads(common.body_mutation.body) == {"model": "m", "messages": []}
    assert sent["content-length"] == str(len(common.body_mutation.body))
    assert "x-api-key" in common.header_mutation.remove_headers


def test_a_refusal_is_an_immediate_response_and_ends_the_stream(processor):
    answers = run(processor, walk("/v1/chat/completions", {"model": "nope", "messages": []}), Context(TOKEN))
    assert [a.WhichOneof("response") for a in answers] == ["request_headers", "immediate_response"]
    reply = answers[1].immediate_response
    assert reply.status.code == 404 and reply.details == "extproc_model_not_found"
    assert json.loads(reply.body)["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("token", [None, "wrong" * 5])
def test_a_stream_without_the_processor_token_gets_nothing(processor, token):
    context = Context(token)
    with pytest.raises(Aborted):
        run(processor, walk("/v1/chat/completions", {"model": "m", "messages": []}), context)
    assert context.aborted is grpc.StatusCode.PERMISSION_DENIED


def test_continue_maps_to_the_empty_answer_of_each_kind():
    for kind in ("request_headers", "request_body", "request_trailers", "response_headers", "response_body",
                 "response_trailers"):
        answer = to_response(kind, CONTINUE)
        assert answer.WhichOneof("response") == kind
        assert answer.ByteSize() <= 2  # the empty message of that kind


def test_body_modes_and_body_mutations_map_to_mode_override_and_body_mutation():
    streamed = to_response("response_headers", Mutate(remove_headers=("content-length",), body_mode="streamed"))
    assert streamed.mode_override.response_body_mode == processing_mode_pb2.ProcessingMode.STREAMED
    assert list(streamed.response_headers.response.header_mutation.remove_headers) == ["content-length"]
    buffered = to_response("response_headers", Mutate(body_mode="buffered"))
    assert buffered.mode_override.response_body_mode == processing_mode_pb2.ProcessingMode.BUFFERED
    body = to_response("response_body", Mutate({"content-length": "2"}, body=b"{}"))
    assert body.response_body.response.body_mutation.body == b"{}"
    assert set_headers(body.response_body.response.header_mutation) == {"content-length": "2"}


def test_a_reply_carries_status_headers_body_and_the_error_kind():
    answer = to_response("request_headers", Reply(503, {"retry-after": "3"}, b"{}"))
    reply = answer.immediate_response
    assert (reply.status.code, reply.body, reply.details) == (503, b"{}", "extproc")
    assert set_headers(reply.headers) == {"retry-after": "3"}


# -- the stream ends itself once Envoy has nothing more to send (a stream Envoy cancels leaks in grpcio)

Mode = processing_mode_pb2.ProcessingMode


def message(kind: str, end_of_stream: bool = True) -> pb.ProcessingRequest:
    part = pb.HttpBody(end_of_stream=end_of_stream) if kind.endswith("_body") else \
        pb.HttpHeaders(end_of_stream=end_of_stream)
    return pb.ProcessingRequest(**{kind: part})


def test_the_phases_left_follow_the_mode_and_the_ends_of_request_and_answer():
    router = configured_mode(ROUTER_MODE)
    assert expects_more("request_headers", message("request_headers", False), router)  # its body comes
    assert not expects_more("request_headers", message("request_headers", True), router)  # a GET: nothing
    assert not expects_more("request_body", message("request_body"), router)  # answers are not sent
    answer = Mode(request_body_mode=Mode.BUFFERED, response_header_mode=Mode.SEND)
    assert expects_more("request_body", message("request_body"), answer)
    assert not expects_more("response_headers", message("response_headers", False), answer)  # no body wanted
    assert expects_more("response_headers", message("response_headers", False),
                        Mode(response_header_mode=Mode.SEND, response_body_mode=Mode.BUFFERED))
    assert not expects_more("response_headers", message("response_headers", True),
                            Mode(response_body_mode=Mode.BUFFERED))  # an answer with no body
    streamed = Mode(response_body_mode=Mode.STREAMED)
    assert expects_more("response_body", message("response_body", False), streamed)  # more chunks
    assert not expects_more("response_body", message("response_body", True), streamed)
    # DEFAULT sends headers (Envoy's reading of an override that leaves them unset) and skips trailers.
    assert expects_more("request_body", message("request_body"), Mode())
    assert not expects_more("response_headers", message("response_headers", False), Mode())
    upstream = configured_mode(UPSTREAM_MODE)
    assert not expects_more("request_headers", message("request_headers", False), upstream)  # headers only


def test_a_stream_with_nothing_more_to_come_ends_without_waiting_for_envoy_to_cancel_it():
    s = settings(providers={"openai": {"api_key": "sk-edge"}}, models=[model("m", "openai")], accounting=False)
    quiet = ExternalProcessor(Gateway(Runtime(s)), TOKEN)

    async def requests() -> AsyncIterator[pb.ProcessingRequest]:
        for m in walk("/v1/chat/completions", {"model": "m", "messages": []})[:2]:
            yield m
        await asyncio.Event().wait()  # Envoy sends nothing more, and keeps the stream until the request ends

    async def collect() -> list[Any]:
        return [r async for r in quiet.Process(requests(), Context(TOKEN))]

    answers = asyncio.run(asyncio.wait_for(collect(), 5))
    assert [a.WhichOneof("response") for a in answers] == ["request_headers", "request_body"]
