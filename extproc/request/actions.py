"""What an exchange answers Envoy with: let the message through, change it, or reply in the client's own API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.formats import api_for_path, error_body
from extproc.formats.errors import error_headers


@dataclass(frozen=True, slots=True)
class Continue:
    """Let the message through unchanged."""


CONTINUE = Continue()


@dataclass(frozen=True, slots=True)
class Mutate:
    """Change the message: headers, body, and how the rest of this direction's body is sent."""

    set_headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # overwrite
    remove_headers: tuple[str, ...] = ()
    body: bytes | None = None  # None: as it came
    clear_route_cache: bool = False  # the route depends on headers set here
    body_mode: str | None = None  # "buffered" | "streamed": ask for the body this way from now on
    answer_headers: bool = False  # on a request-headers answer: send the response headers too (this stream only)
    dynamic_metadata: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # Envoy dynamic metadata


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client directly; nothing goes upstream."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    error: ClientError | None = field(default=None)


Action = Continue | Mutate | Reply


def reject(api: Api, err: ClientError) -> Reply:
    return Reply(err.status, error_headers(err), error_body(api, err), err)


def internal_error(path: str) -> Reply:
    """What a client gets when the gateway itself failed: its own API's envelope, and nothing sent upstream."""
    return reject(api_for_path(path), ClientError(500, "internal_error", "The gateway failed to route this request."))
