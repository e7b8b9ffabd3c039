"""Anthropic Messages (and its token counter)."""

from __future__ import annotations

import dataclasses
import re

from extproc.core.providers import Api
from extproc.core.view import RequestView
from extproc.formats.base import JsonObject, body_model, measure, positive_int


def read_messages(doc: JsonObject, _: re.Match[str]) -> RequestView:
    model = body_model(doc)
    tokens, images = measure([doc.get("messages") or [], doc.get("system") or ""])
    needs = set()
    if images:
        needs.add("vision")
    if doc.get("tools"):
        needs.add("tools")
    if doc.get("stream") is True:
        needs.add("streaming")
    thinking = doc.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        needs.add("reasoning")
    if doc.get("output_format") or (isinstance(doc.get("output_config"), dict) and doc["output_config"].get("format")):
        needs.add("structured_output")
    return RequestView(Api.ANTHROPIC, model, "chat", frozenset(needs), tokens, positive_int(doc, "max_tokens"),
                       system_head=system_head(doc.get("system")))


def read_count_tokens(doc: JsonObject, match: re.Match[str]) -> RequestView:
    """A token count is read like the request it counts, and spends nothing (Claude Code asks for counts too)."""
    return dataclasses.replace(read_messages(doc, match), counts_tokens=True)


SYSTEM_HEAD = 80  # characters of the system prompt's start that resolution may compare (a client's mark)


def system_head(system: object) -> str:
    """How the system prompt starts: its text, or its first block's (Claude Code's billing block comes first)."""
    if isinstance(system, str):
        return system[:SYSTEM_HEAD]
    if isinstance(system, list) and system and isinstance(system[0], dict):
        text = system[0].get("text")
        return text[:SYSTEM_HEAD] if isinstance(text, str) else ""
    return ""
