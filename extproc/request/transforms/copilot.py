"""GitHub Copilot's API, a Copilot login's upstream: the headers it reads from each request. Pure.

Copilot bills a premium request for each turn a user starts, not for the turns an agent makes on its own (a
tool's result sent back): `X-Initiator` says which. A client that says so itself (Copilot's own clients do) is
taken at its word; for one that does not, it is read here from the body as it leaves (in whatever API it leaves
in, translated or not). A request that carries an image says so with `Copilot-Vision-Request`, or Copilot
refuses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extproc.core.providers import Api
from extproc.core.resolve import Decision
from extproc.formats import Endpoint
from extproc.formats.base import JsonObject

if TYPE_CHECKING:  # the transforms package registers this module's steps
    from extproc.request.transforms import Outgoing

INITIATOR = "x-initiator"
VISION = "copilot-vision-request"
HEADERS = (INITIATOR, VISION)


def copilot_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """Set what the client did not send (what it sent passes as it is)."""
    agent, vision = read_turn(out.api or endpoint.api, out.doc)
    if INITIATOR not in out.client_headers:
        out.headers[INITIATOR] = "agent" if agent else "user"
    if vision and VISION not in out.client_headers:
        out.headers[VISION] = "true"


def read_turn(api: Api, doc: JsonObject) -> tuple[bool, bool]:
    """(whether the turn answers a tool call, an agent's rather than the user's; whether the request carries an
    image) for a Chat Completions, Responses or Messages body. Anything else last (the user's message, an
    assistant's prefill, a system message) is the user's turn."""
    if api is Api.ANTHROPIC:
        return _messages(doc.get("messages"))
    if "input" in doc:
        return _responses(doc.get("input"))
    return _chat(doc.get("messages"))


def _chat(messages: Any) -> tuple[bool, bool]:
    """A tool's result last (or a function's, the older shape)."""
    if not isinstance(messages, list) or not messages:
        return False, False
    vision = any(_has_part(m.get("content"), "image_url") for m in messages if isinstance(m, dict))
    return _role(messages[-1]) in ("tool", "function"), vision


def _responses(items: Any) -> tuple[bool, bool]:
    """A tool call's output last (function_call_output, or another tool's `…_call_output`); a string input is the
    user's."""
    if not isinstance(items, list) or not items:
        return False, False
    vision = any(_has_part(i.get("content"), "input_image") for i in items if isinstance(i, dict))
    last = items[-1]
    kind = last.get("type") if isinstance(last, dict) else None
    return isinstance(kind, str) and kind.endswith("_call_output"), vision


def _messages(messages: Any) -> tuple[bool, bool]:
    """Anthropic's tool results come back in a user message: the last message, the user's, carrying tool_result
    blocks."""
    if not isinstance(messages, list) or not messages:
        return False, False
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    vision = any(_has_image(m.get("content")) for m in messages if isinstance(m, dict))
    return _role(last) == "user" and _has_part(content, "tool_result"), vision


def _has_image(content: Any) -> bool:
    """An image block, or one inside a tool's result."""
    return isinstance(content, list) and any(
        isinstance(p, dict) and (p.get("type") == "image" or p.get("type") == "tool_result"
                                 and _has_part(p.get("content"), "image")) for p in content)


def _has_part(content: Any, kind: str) -> bool:
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == kind for p in content)


def _role(item: Any) -> Any:
    return item.get("role") if isinstance(item, dict) else None
