"""Client APIs as one table: every endpoint the gateway serves, and what each family shares.

A row says where an endpoint lives (path pattern, method), how its requests are read (model and
capabilities) and how a decision is applied (model rewritten in the body or in the path). A family says
how its errors look, to clients and in Envoy's own local replies, and which paths are its own even when
no row matches. Everything else is derived from here: path → API, the endpoint names config accepts,
the Envoy local-reply mappers. Plain bytes and dicts only: a leaf, which knows neither resolution nor
translation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.core.view import RequestView
from extproc.formats import anthropic, errors, gemini, openai
from extproc.formats.base import (
    JsonObject,
    body_model,
    checked_model_id,
    decode_object,
    set_body_model,
    without_credentials,
)

Reader = Callable[[JsonObject, re.Match[str]], RequestView]
Rewriter = Callable[[JsonObject, str], bool]


@dataclass(frozen=True, slots=True)
class Family:
    """What every endpoint of one client API family shares."""

    api: Api
    paths: str  # a regex (Python and RE2 alike) that the family's paths, query included, match whole
    error_body: Callable[[ClientError], bytes]
    local_reply: Callable[[str], dict[str, Any]]  # Envoy's own reply body (may hold Envoy format operators)
    stream_error: Callable[[ClientError, str], bytes]  # the event that ends a stream failed midway (endpoint →)


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One client endpoint."""

    api: Api
    endpoint: str  # the name config (`apis.X.endpoints`) and health use; several rows may share it
    pattern: str  # the bare path, matched whole
    read: Reader  # the request's model and the capabilities it uses
    rewrite: Rewriter = set_body_model  # points the body's model references at the served model
    client_prefix: str = "/v1"  # replaced by the provider's prefix upstream
    model_in_path: bool = False  # the path's `model` group names the model (Gemini)
    method: str = "POST"


FAMILIES: Mapping[Api, Family] = {f.api: f for f in (
    Family(Api.OPENAI, r"/.*", errors.openai_error, errors.openai_local_reply, errors.openai_stream_error),
    Family(Api.ANTHROPIC, r"/v1/messages([/?].*)?", errors.anthropic_error, errors.anthropic_local_reply,
           errors.anthropic_stream_error),
    Family(Api.GEMINI, r"/(v1beta|v1alpha)/.*|/v1/models/[^?]*:.*", errors.gemini_error, errors.gemini_local_reply,
           errors.gemini_stream_error),
)}

_GEMINI = r"/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:]*):"

SPECS: tuple[ApiSpec, ...] = (
    ApiSpec(Api.OPENAI, "chat", r"/v1/chat/completions", openai.read_chat),
    ApiSpec(Api.OPENAI, "completions", r"/v1/completions", openai.read_chat),
    ApiSpec(Api.OPENAI, "responses", r"/v1/responses", openai.read_responses),
    ApiSpec(Api.OPENAI, "embeddings", r"/v1/embeddings", openai.read_embeddings),
    ApiSpec(Api.ANTHROPIC, "messages", r"/v1/messages", anthropic.read_messages),
    ApiSpec(Api.ANTHROPIC, "messages", r"/v1/messages/count_tokens", anthropic.read_count_tokens),
    ApiSpec(Api.GEMINI, "gemini", _GEMINI + "generateContent", gemini.read_generate, gemini.path_only, "", True),
    ApiSpec(Api.GEMINI, "gemini", _GEMINI + "streamGenerateContent", gemini.read_generate, gemini.path_only, "",
            True),
    ApiSpec(Api.GEMINI, "gemini", _GEMINI + "countTokens", gemini.read_generate, gemini.path_only, "", True),
    ApiSpec(Api.GEMINI, "gemini", _GEMINI + "embedContent", gemini.read_embed, gemini.rewrite_body_model, "", True),
    ApiSpec(Api.GEMINI, "gemini", _GEMINI + "batchEmbedContents", gemini.read_batch_embed,
            gemini.rewrite_batch_models, "", True),
)

# The endpoint names config accepts, per family.
ENDPOINTS: Mapping[Api, frozenset[str]] = {api: frozenset(s.endpoint for s in SPECS if s.api is api) for api in Api}

_COMPILED = tuple((re.compile(spec.pattern), spec) for spec in SPECS)
_FAMILY_PATHS = tuple((re.compile(f.paths), f.api) for f in FAMILIES.values() if f.api is not Api.OPENAI)


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    view: RequestView
    doc: JsonObject  # the decoded body
    body: bytes = b""  # as it came (translation looks in it for the history it wrote)

    @property
    def size(self) -> int:
        """The body's length in bytes, as it came."""
        return len(self.body)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A request path matched to its row: how to read the body and where the path continues upstream."""

    spec: ApiSpec
    match: re.Match[str]
    query: str
    path: str  # as the client sent it

    @property
    def api(self) -> Api:
        return self.spec.api

    @property
    def name(self) -> str:
        return self.spec.endpoint

    @property
    def counts_tokens(self) -> bool:
        """Anthropic's count_tokens and Gemini's countTokens: they answer a count, not a completion."""
        bare = self.match.string
        return bare.endswith("/count_tokens") or bare.endswith(":countTokens")

    def read(self, body: bytes) -> ParsedRequest:
        """Parse a request body for this endpoint (raises ClientError for bad input)."""
        doc = decode_object(body, None if self.spec.model_in_path else "model")
        view = self.spec.read(doc, self.match)
        if view.endpoint != self.spec.endpoint:
            view = replace(view, endpoint=self.spec.endpoint)
        return ParsedRequest(view, doc, body)

    def requested(self, body: bytes = b"") -> str:
        """The model the request names, "" when none can be read: for the record of a request refused before
        its body was read whole (Gemini's is in the path; the others' in the body, when it has one)."""
        try:
            if self.spec.model_in_path:
                return checked_model_id(unquote(self.match.group("model")))
            return body_model(decode_object(body, "model"))
        except ClientError:
            return ""

    def upstream_rest(self, model_id: str) -> str:
        """The path after the client prefix, with the model rewritten where it lives in the path."""
        bare = self.match.string
        if self.spec.model_in_path:
            bare = bare[:self.match.start("model")] + model_id + bare[self.match.end("model"):]
        query = without_credentials(self.query)
        return bare[len(self.spec.client_prefix):] + (f"?{query}" if query else "")


def match_endpoint(path: str) -> Endpoint | None:
    """The endpoint a request path names, or None when the gateway does not serve that path."""
    bare, _, query = path.partition("?")
    for pattern, spec in _COMPILED:
        found = pattern.fullmatch(bare)
        if found:
            return Endpoint(spec, found, query, path)
    return None


def api_for_path(path: str) -> Api:
    """The family whose error envelope fits a path: its row's, else the family that claims the path."""
    endpoint = match_endpoint(path)
    if endpoint is not None:
        return endpoint.api
    return next((api for pattern, api in _FAMILY_PATHS if pattern.fullmatch(path)), Api.OPENAI)


def error_body(api: Api, err: ClientError) -> bytes:
    return FAMILIES[api].error_body(err)


__all__ = ["ENDPOINTS", "FAMILIES", "SPECS", "ApiSpec", "Endpoint", "Family", "ParsedRequest", "api_for_path",
           "error_body", "match_endpoint"]
