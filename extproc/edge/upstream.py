"""The upstream ext_proc edges, beside the router-level loop in `ext_proc.py`: an attempt's messages →
AttemptExchange events (its request headers also carry the plan, forwarded dynamic metadata, and the endpoint
Envoy picked), and a login's retry after a 401 → ReauthExchange events; their actions → protobuf.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import text_format

from extproc.bootstrap.names import UPSTREAM_MODE
from extproc.edge.messages import answer_stream, configured_mode, header_map
from extproc.request.actions import CONTINUE, Action
from extproc.request.attempt import AttemptExchange
from extproc.request.plan import HOST_METADATA, LOGIN_KEY, PLAN_KEY, PLAN_NAMESPACE, PROVIDER_KEY
from extproc.request.reauth import ReauthExchange


def _plan(request: pb.ProcessingRequest) -> str | None:
    fields = request.metadata_context.filter_metadata[PLAN_NAMESPACE].fields
    return fields[PLAN_KEY].string_value if PLAN_KEY in fields else None


def _host_route(request: pb.ProcessingRequest) -> str | None:
    """The provider entry of the endpoint Envoy picked for this attempt (from its metadata, as text proto)."""
    attributes = request.attributes["envoy.filters.http.ext_proc"].fields
    if HOST_METADATA not in attributes:
        return None
    return _provider_of(attributes[HOST_METADATA].string_value)


@functools.lru_cache(maxsize=1024)
def _provider_of(text: str) -> str | None:
    """The provider an endpoint's metadata names. The endpoints are few and their metadata fixed, while parsing
    text proto costs a twentieth of an attempt's processing: each text is parsed once."""
    try:
        metadata = text_format.Parse(text, base_pb2.Metadata())
    except text_format.ParseError:  # not an endpoint we can name: the attempt is refused, never sent
        return None
    fields = metadata.filter_metadata[PLAN_NAMESPACE].fields
    return fields[PROVIDER_KEY].string_value if PROVIDER_KEY in fields else None


async def _event(exchange: AttemptExchange, kind: str, request: pb.ProcessingRequest) -> Action:
    if kind == "request_headers":
        return exchange.request_headers(header_map(request.request_headers), _plan(request), _host_route(request))
    if kind == "request_body":
        return await exchange.request_body(request.request_body.body)
    if kind == "response_headers":
        headers = header_map(request.response_headers, AttemptExchange.WANTED_RESPONSE_HEADERS)
        return exchange.response_headers(headers, request.response_headers.end_of_stream)
    if kind == "response_body":
        return exchange.response_body(request.response_body.body, request.response_body.end_of_stream)
    return CONTINUE


UPSTREAM = configured_mode(UPSTREAM_MODE)


def process(exchange: AttemptExchange,
            requests: AsyncIterator[pb.ProcessingRequest]) -> AsyncIterator[pb.ProcessingResponse]:
    return answer_stream(requests, functools.partial(_event, exchange), UPSTREAM)


async def _reauth_event(exchange: ReauthExchange, kind: str, request: pb.ProcessingRequest) -> Action:
    if kind == "request_headers":
        fields = request.metadata_context.filter_metadata[PLAN_NAMESPACE].fields
        login = fields[LOGIN_KEY].string_value if LOGIN_KEY in fields else ""
        return await exchange.request_headers(header_map(request.request_headers), login)
    if kind == "response_headers":
        return exchange.response_headers(header_map(request.response_headers, ReauthExchange.WANTED_RESPONSE_HEADERS))
    return CONTINUE


def process_reauth(exchange: ReauthExchange,
                   requests: AsyncIterator[pb.ProcessingRequest]) -> AsyncIterator[pb.ProcessingResponse]:
    return answer_stream(requests, functools.partial(_reauth_event, exchange), UPSTREAM)
