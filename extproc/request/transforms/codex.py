"""ChatGPT's Codex backend, a Codex login's upstream: the body rules it holds every request to. Pure.

The backend takes what the Codex CLI sends and refuses the rest with 400: `instructions` always present (the
CLI's system prompt), nothing stored (`store: false`), streamed (the provider's `stream_only`, set by the
translate step), and none of the fields it does not support (the provider's `drop_fields`, taken off by the
step before this one). So whatever the client sent (a Responses body as it came, or a Chat Completions or
Messages body translated into one), this step makes it such a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from extproc.core.resolve import Decision
from extproc.formats import Endpoint
from extproc.formats.base import JsonObject

if TYPE_CHECKING:  # the transforms package registers this module's steps
    from extproc.request.transforms import Outgoing


def codex_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """The backend's shape; a body the client marks (the provider's `lite_header`: true) as the Codex CLI's
    compact shape, its system prompt and tools as developer items of `input`, keeps going without
    `instructions`, as the backend takes it."""
    marker = decision.provider.lite_header
    lite = marker is not None and out.client_headers.get(marker, "").lower() == "true"
    if shape(out.doc, lite=lite):
        out.changed = True


def shape(doc: JsonObject, lite: bool = False) -> bool:
    """The backend's shape of a Responses body: the system prompt in `instructions` ("" when there is none,
    unless the body is in the CLI's `lite` shape), every other system message as a developer one (the roles the
    Codex CLI sends), nothing stored. True when the body changed."""
    changed = False
    items = doc.get("input")
    if isinstance(items, list):
        leading = 0
        while leading < len(items) and _system_text(items[leading]) is not None:
            leading += 1
        if leading and not doc.get("instructions"):  # the system prompt, where the backend reads it
            doc["instructions"] = "\n\n".join(t for t in (_system_text(i) for i in items[:leading]) if t)
            del items[:leading]
            changed = True
        for item in items:
            if isinstance(item, dict) and item.get("role") == "system":
                item["role"] = "developer"
                changed = True
    if doc.get("instructions") is None and not lite:
        doc["instructions"] = ""
        changed = True
    if doc.get("store") is not False:
        doc["store"] = False
        changed = True
    return changed


def _system_text(item: Any) -> str | None:
    """A system message's text (None: not a system message, or one with more than text)."""
    if not isinstance(item, dict) or item.get("role") != "system" or item.get("type", "message") != "message":
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("input_text", "text")
                                         and isinstance(p.get("text"), str) for p in content):
        return "\n\n".join(p["text"] for p in content)
    return None


def codex_refusal(endpoint: Endpoint, doc: Mapping[str, Any]) -> str | None:
    """What the backend cannot do for this request: it stores no answer (`store: false`), so there is none for
    `previous_response_id` to continue (over HTTP it refuses the field). Told to the client rather than dropped:
    without it the model would answer the last turn alone, as if the conversation had not happened."""
    if endpoint.name == "responses" and doc.get("previous_response_id"):
        return ("a ChatGPT login's backend keeps no answers (store: false), so it cannot continue "
                "previous_response_id: send the whole conversation in `input` instead")
    return None
