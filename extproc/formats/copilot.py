"""GitHub Copilot's API, a Copilot login's upstream: the headers it reads from each request. Pure.

Copilot bills a premium request for each turn a user starts, not for the turns an agent makes on its own (a
tool's result sent back): `X-Initiator` says which, read here from the body as it leaves (in whatever API it
leaves in, translated or not), as Copilot's own clients do. A request that carries an image says so with
`Copilot-Vision-Request`, or Copilot refuses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extproc.core.providers import Api
from extproc.core.resolve import Decision
from extproc.formats import Endpoint
from extproc.formats.base import JsonObject

if TYPE_CHECKING:  # transforms.py registers this module's step
    from extproc.formats.transforms import Outgoing

INITIATOR = "x-initiator"
VISION = "copilot-vision-request"
HEADERS = (INITIATOR, VISION)


def copilot_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    agent, vision = read_turn(out.api or endpoint.api, out.doc)
    out.headers[INITIATOR] = "agent" if agent else "user"
    if vision:
        out.headers[VISION] = "true"


def read_turn(api: Api, doc: JsonObject) -> tuple[bool, bool]:
    """(whether the last turn is an agent's rather than the user's, whether the request carries an image) for a
    Chat Completions, Responses or Messages body."""
    if api is Api.ANTHROPIC:
        return _messages(doc.get("messages"))
    if "input" in doc:
        return _responses(doc.get("input"))
    return _chat(doc.get("messages"))


def _chat(messages: Any) -> tuple[bool, bool]:
    """The last message not the user's (a tool's result, an assistant's prefill): an agent's turn."""
    if not isinstance(messages, list) or not messages:
        return False, False
    vision = any(_has_part(m.get("content"), "image_url") for m in messages if isinstance(m, dict))
    return _role(messages[-1]) != "user", vision


def _responses(items: Any) -> tuple[bool, bool]:
    """A string input is the user's; a list whose last item is not a user message (a function_call_output has
    no role) is an agent's turn."""
    if not isinstance(items, list) or not items:
        return False, False
    vision = any(_has_part(i.get("content"), "input_image") for i in items if isinstance(i, dict))
    return _role(items[-1]) != "user", vision


def _messages(messages: Any) -> tuple[bool, bool]:
    """Anthropic's tool results come back in a user message: the turn is the user's only when that message
    says something besides tool results."""
    if not isinstance(messages, list) or not messages:
        return False, False
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    said = isinstance(content, str) or isinstance(content, list) and any(
        not isinstance(p, dict) or p.get("type") != "tool_result" for p in content)
    vision = any(_has_image(m.get("content")) for m in messages if isinstance(m, dict))
    return not (_role(last) == "user" and said), vision


def _has_image(content: Any) -> bool:
    """An image block, or one inside a tool's result."""
    return isinstance(content, list) and any(
        isinstance(p, dict) and (p.get("type") == "image" or p.get("type") == "tool_result"
                                 and _has_part(p.get("content"), "image")) for p in content)


def _has_part(content: Any, kind: str) -> bool:
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == kind for p in content)


def _role(item: Any) -> Any:
    return item.get("role") if isinstance(item, dict) else None
