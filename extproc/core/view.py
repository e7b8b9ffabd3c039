"""What the request path knows of a request before it is resolved: read from the body by its format, read by
resolution. Its own module, so the formats build it without knowing resolution. Pure data."""

from __future__ import annotations

from dataclasses import dataclass

from extproc.core.providers import Api


@dataclass(frozen=True, slots=True)
class RequestView:
    """What resolution needs to know about a request, extracted by the format module."""

    api: Api
    model: str
    mode: str = "chat"  # chat | embedding
    needs: frozenset[str] = frozenset()  # capabilities the request uses
    input_tokens: int = 0  # a rough estimate
    max_output_tokens: int | None = None
    endpoint: str = "chat"  # the client endpoint (chat, responses, embeddings, messages, …); set by Endpoint.read
    same_provider: bool = False  # state lives at the provider (previous_response_id): no cross-provider fallback
    system_head: str = ""  # how the request's system prompt starts (a login that serves one client reads it)
    counts_tokens: bool = False  # a token count: it spends nothing, so any client's may go on any login
