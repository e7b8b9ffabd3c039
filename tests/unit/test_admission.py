"""Admission: when a new request is refused at once, and how Envoy's own message timeout is told to the client."""

from __future__ import annotations

import json
from typing import Any

import pytest

from extproc.bootstrap.local_replies import local_reply_config
from extproc.config import parse_settings
from extproc.core.admission import MESSAGE_TIMEOUT, AdmissionPolicy, busy_refusal, waited
from extproc.core.errors import ConfigError


def test_a_request_whose_headers_waited_too_long_or_past_the_open_limit_is_refused_with_retry_after() -> None:
    policy = AdmissionPolicy(max_wait=1.0, max_requests=3)
    assert busy_refusal(policy, 0.4, 3) is None  # in time, and itself the third open request
    assert busy_refusal(policy, None, 1) is None  # no time known: only the count decides
    late, full = busy_refusal(policy, 1.5, 1), busy_refusal(policy, 0.1, 4)
    for refused in (late, full):
        assert refused is not None
        assert (refused.status, refused.kind, refused.retry_after) == (503, "gateway_overloaded", 1)
    assert late is not None and "waited 1.5 s" in late.message
    assert full is not None and "processor.max_requests: 3" in full.message
    assert busy_refusal(AdmissionPolicy(max_wait=1.0), 0.1, 10_000) is None  # max_requests 0: no limit


def test_the_wait_is_read_from_envoys_request_time() -> None:
    sent = "2026-12-07T02:37:01.445849+00:00"  # as Envoy 1.40 sends the request.time attribute
    assert waited(sent, 1796611021.945849) == pytest.approx(0.5)
    assert waited("not a time", 1.0) is None


def test_max_wait_and_max_requests_are_read_and_checked() -> None:
    assert parse_settings({}, {}).admission == AdmissionPolicy(2.0, 0)
    assert parse_settings({"processor": {"port": 6000, "max_wait": 2, "max_requests": 500}}, {}).admission == \
        AdmissionPolicy(2.0, 500)
    for bad in ({"max_wait": MESSAGE_TIMEOUT}, {"max_wait": 0}, {"max_requests": -1}, {"max_requests": True}):
        with pytest.raises(ConfigError, match=f"processor.{next(iter(bad))}"):
            parse_settings({"processor": bad}, {})


def _late_mappers() -> list[dict[str, Any]]:
    late = "response.code == 504 && response.code_details.startsWith('ext_proc_error')"
    return [m for m in local_reply_config()["mappers"] if late in json.dumps(m["filter"])]


def test_envoys_message_timeout_is_a_503_with_retry_after_in_each_clients_envelope() -> None:
    mappers = _late_mappers()
    assert len(mappers) == 3  # one per family: Anthropic's and Gemini's by path or API, OpenAI's the rest
    for mapper in mappers:
        assert mapper["status_code"] == 503
        assert mapper["headers_to_add"][0]["header"] == {"key": "retry-after", "value": "1"}
    bodies = [m["body_format_override"]["json_format"] for m in mappers]
    anthropic = next(b for b in bodies if b.get("type") == "error")
    assert anthropic["error"]["type"] == "api_error" and "too busy" in anthropic["error"]["message"]
    openai = next(b for b in bodies if b["error"].get("code") == "gateway_overloaded")
    assert openai["error"]["type"] == "service_unavailable_error"
    gemini = next(b for b in bodies if b["error"].get("status") == "UNAVAILABLE")
    assert gemini["error"]["code"] == 503
    # the processor-down 502 keeps its own mapper, before this one
    assert all("response.code == 502" not in json.dumps(m["filter"]) for m in mappers)
