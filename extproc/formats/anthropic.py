"""Anthropic Messages (and its token counter)."""

from __future__ import annotations

import re

from extproc.core.providers import Api
from extproc.core.resolve import RequestView
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
    return RequestView(Api.ANTHROPIC, model, "chat", frozenset(needs), tokens, positive_int(doc, "max_tokens"))
