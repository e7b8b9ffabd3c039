"""Provider-held state in a client's history, on its way back to the client's own API.

A client served through translation keeps in its history the thinking this gateway wrote for it (marked
`TRANSLATED`). Its own provider never made those blocks and rejects them ("invalid signature in thinking
block", an unknown reasoning item), so a request to its own API leaves them out. Pure.
"""

from __future__ import annotations

from typing import Any

from extproc.translate.ir import TRANSLATED, TRANSLATED_REASONING

MARK = TRANSLATED.encode()


def carries_translated(endpoint: str, body: bytes) -> bool:
    """Whether a request's raw body may hold such thinking: a request without the mark costs one byte search."""
    return endpoint in ("messages", "responses") and MARK in body


def drop_translated(endpoint: str, doc: dict[str, Any]) -> bool:
    """Leave out of `doc` the thinking another provider wrote; True when the body changed."""
    if endpoint == "messages":
        return _messages(doc)
    if endpoint == "responses":
        items = doc.get("input")
        if not isinstance(items, list):
            return False
        kept = [i for i in items if not (isinstance(i, dict) and i.get("type") == "reasoning"
                                         and str(i.get("id", "")).startswith(TRANSLATED_REASONING))]
        doc["input"] = kept
        return len(kept) != len(items)
    return False


def _translated_thinking(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking") \
        and block.get("signature") == TRANSLATED


def _messages(doc: dict[str, Any]) -> bool:
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return False
    last_assistant = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
                         default=-1)
    changed = from_last = False
    kept_messages = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(_translated_thinking(b) for b in content):
            changed, from_last = True, from_last or i == last_assistant
            content = [b for b in content if not _translated_thinking(b)]
            if not content:
                continue  # a turn that was only thinking: Anthropic joins the turns either side
            message = {**message, "content": content}
        kept_messages.append(message)
    if not changed:
        return False
    doc["messages"] = kept_messages
    if from_last and isinstance(doc.get("thinking"), dict):
        # With thinking on, Anthropic wants the turn a tool loop continues to open with its own thinking block;
        # that turn's thinking was another provider's, so this turn goes without thinking.
        doc.pop("thinking")
        management = doc.get("context_management")
        edits = management.get("edits") if isinstance(management, dict) else None
        if isinstance(management, dict) and isinstance(edits, list):
            kept = [e for e in edits if not (isinstance(e, dict) and str(e.get("type", "")).startswith(
                "clear_thinking"))]  # edits of thinking, which this turn has none of
            if kept:
                management["edits"] = kept
            else:
                doc.pop("context_management")
    return True
