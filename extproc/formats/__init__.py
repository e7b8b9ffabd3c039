"""Client API formats: find the model, list the capabilities a request uses, apply a decision, and
render errors in that API's own envelope. Every function here works on plain bytes and dicts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from extproc.core.providers import Api
from extproc.formats import anthropic, gemini, openai
from extproc.formats.base import Endpoint, ParsedRequest

_Parser = Callable[[bytes, re.Match[str]], ParsedRequest]

# (path pattern, API family, endpoint name, client prefix replaced by the provider's, parser)
_ENDPOINTS: tuple[tuple[re.Pattern[str], Api, str, str, _Parser], ...] = tuple(
    (re.compile(pattern), api, name, prefix, parse) for pattern, api, name, prefix, parse in (
        (r"/v1/chat/completions", Api.OPENAI, "chat", "/v1", openai.parse_chat),
        (r"/v1/completions", Api.OPENAI, "completions", "/v1", openai.parse_chat),
        (r"/v1/responses", Api.OPENAI, "responses", "/v1", openai.parse_responses),
        (r"/v1/embeddings", Api.OPENAI, "embeddings", "/v1", openai.parse_embeddings),
        (r"/v1/messages(/count_tokens)?", Api.ANTHROPIC, "messages", "/v1", anthropic.parse_messages),
        (r"/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:]*):(?P<method>generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)",
         Api.GEMINI,
         "gemini", "", gemini.parse_gemini),
    )
)


def match_endpoint(path: str) -> Endpoint | None:
    """The endpoint a request path names, or None when the gateway does not serve that path."""
    bare, _, query = path.partition("?")
    found = _match(bare)
    if found is None:
        return None
    (_, api, name, prefix, parse), match = found
    return Endpoint(api, name, parse, prefix, match, query, path)


@functools.lru_cache(maxsize=1024)
def _match(bare: str) -> tuple[tuple[re.Pattern[str], Api, str, str, _Parser], re.Match[str]] | None:
    """Cached on the bare path (never the query, which may hold a client's key): each request asks twice."""
    for entry in _ENDPOINTS:
        found = entry[0].fullmatch(bare)
        if found:
            return entry, found
    return None


def api_for_path(path: str) -> Api:
    """The API family whose error envelope fits a path, for errors raised before a match."""
    if path.startswith("/v1/messages"):
        return Api.ANTHROPIC
    if path.startswith(("/v1beta/", "/v1alpha/")) or ":generateContent" in path or ":streamGenerateContent" in path:
        return Api.GEMINI
    return Api.OPENAI


__all__ = ["Endpoint", "ParsedRequest", "api_for_path", "match_endpoint"]
