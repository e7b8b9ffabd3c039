"""Envoy's own replies (no healthy upstream, connect failure, timeout, body too large, processor down) in the
client's API envelope, one mapper per family from the table in `extproc.formats`.

They are matched by Envoy's response flags and by 413 and 502 (the processor-failure status), which the
processor's own immediate responses never carry, so those (already in the right shape) stay as they are.
"""

from __future__ import annotations

from typing import Any

from extproc.core.headers import API_HEADER
from extproc.core.providers import Api
from extproc.formats import FAMILIES

_ENVOY_FAILURE_FLAGS = ["UH", "UF", "UO", "NR", "URX", "UT", "UR", "UC", "DC", "LH"]
PROCESSOR_DOWN = "The gateway could not reach its processor; nothing was sent upstream."
PROCESSOR_DOWN_STATUS = 502


def _status(code: int) -> dict[str, Any]:
    equal = {"op": "EQ", "value": {"default_value": code, "runtime_key": "_"}}
    return {"status_code_filter": {"comparison": equal}}


def local_reply_config(by_api_header: bool = False) -> dict[str, Any]:
    """Mappers that pick the envelope by the API the processor names in `x-extproc-api` (an attempt may have
    rewritten the path to the provider's), else by the client's path; `by_api_header` alone behind the
    attempts' internal listeners, where the path is always the provider's."""
    envoy_failure = {"or_filter": {"filters": [{"response_flag_filter": {"flags": _ENVOY_FAILURE_FLAGS}},
                                               _status(413)]}}
    # Families that claim paths first; OpenAI's envelope is the default and goes last, unfiltered.
    families = sorted(FAMILIES.values(), key=lambda f: f.api is Api.OPENAI)
    mappers = []
    for failure, message in ((_status(PROCESSOR_DOWN_STATUS), PROCESSOR_DOWN), (envoy_failure, "%LOCAL_REPLY_BODY%")):
        for family in families:
            named = {"header_filter": {"header": {"name": API_HEADER, "string_match": {"exact": family.api.value}}}}
            by_path = {"and_filter": {"filters": [
                {"header_filter": {"header": {"name": API_HEADER, "present_match": False}}},
                {"header_filter": {"header": {"name": ":path", "string_match": {"safe_regex": {
                    "regex": family.paths}}}}}]}}
            family_filter = named if by_api_header else {"or_filter": {"filters": [named, by_path]}}
            match = failure if family.api is Api.OPENAI else {"and_filter": {"filters": [failure, family_filter]}}
            mappers.append({"filter": match, "body_format_override": {
                "json_format": family.local_reply(message), "content_type": "application/json"}})
    return {"mappers": mappers}
