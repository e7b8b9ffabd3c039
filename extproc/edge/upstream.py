"""The per-attempt ext_proc edge: an attempt's messages → AttemptExchange events, its actions → protobuf.

Beside the router-level loop in `ext_proc.py`; only the request-headers event differs, because it also
carries the plan (dynamic metadata forwarded from the router-level answer) and the endpoint Envoy picked.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import text_format

from extproc.attempt import AttemptExchange
from extproc.attempts import HOST_METADATA, PLAN_KEY, PLAN_NAMESPACE, PROVIDER_KEY
from extproc.edge.messages import answer_stream, header_map
from extproc.exchange import CONTINUE, Action


def _plan(request: pb.ProcessingRequest) -> str | None:
    fields = request.metadata_context.filter_metadata[PLAN_NAMESPACE].fields
    return fields[PLAN_KEY].string_value if PLAN_KEY in fields else None


def _host_route(request: pb.ProcessingRequest) -> str | None:
    """The provider entry of the endpoint Envoy picked for this attempt (from its metadata, as text proto)."""
    attributes = request.attributes["envoy.filters.http.ext_proc"].fields
    if HOST_METADATA not in attributes:
        return None
    metadata = text_format.Parse(attributes[HOST_METADATA].string_value, base_pb2.Metadata())
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


def process(exchange: AttemptExchange,
            requests: AsyncIterator[pb.ProcessingRequest]) -> AsyncIterator[pb.ProcessingResponse]:
    return answer_stream(requests, functools.partial(_event, exchange))
