"""The usage record of a refused request names the model the client asked for, wherever it could be read."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from extproc.request.actions import Reply
from extproc.request.exchange import Exchange
from extproc.request.gateway import Gateway
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import model, provider, settings

KEY, LIMITED = "team-key-0123456789", "limited-key-0123456789"
GEMINI_PATH, CHAT = "/v1beta/models/{}:generateContent", "/v1/chat/completions"


@pytest.fixture
def gateway(clock: Clock) -> Gateway:
    s = settings(providers={"alpha": provider({"openai": "/v1"}, "sk-alpha")}, models=[model("known", "alpha")],
                 clients={"keys": [{"name": "team", "key": KEY}, {"name": "limited", "key": LIMITED, "rpm": 1}]})
    return Gateway(Runtime(s, clock=clock))


def refused(gateway: Gateway, path: str, body: bytes | None, caplog: pytest.LogCaptureFixture,
            key: str | None = KEY) -> tuple[int, dict[str, Any]]:
    """The status a request gets and the usage record written for it (it must be refused)."""
    headers = {":method": "POST", ":path": path, **({"authorization": f"Bearer {key}"} if key else {})}

    async def send(ex: Exchange) -> Any:
        answer = ex.request_headers(headers, end_of_stream=body is None)
        return answer if body is None or isinstance(answer, Reply) else await ex.request_body(body)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="extproc.usage"):
        answer = asyncio.run(send(Exchange(gateway)))
    assert isinstance(answer, Reply), answer
    (record,) = [r.fields for r in caplog.records if r.name == "extproc.usage"]
    assert record["outcome"] == "rejected" and record["served_model"] is None
    return answer.status, record


def chat(model_id: Any, **extra: Any) -> bytes:
    return json.dumps({"model": model_id, "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


@pytest.mark.parametrize(("path", "body", "status", "requested"), [
    (CHAT, chat("nope-model"), 404, "nope-model"),  # no such model: still the one asked for
    ("/v1beta/models/known:batchEmbedContents", b"{}", 400, "known"),  # a bad body, the model in the path
    (CHAT, b'{"model": "known", "messages": [', 400, ""),  # not JSON: no model can be read
    (CHAT, json.dumps({"messages": []}).encode(), 400, ""),  # no model at all
    (CHAT, b'{"model": "known", "model": "nope-model", "messages": []}', 400, ""),  # which one: neither
    (CHAT, chat("../etc"), 400, ""),  # not a model id: never written as one
])
def test_a_refused_body_records_the_model_it_names(gateway: Gateway, caplog: pytest.LogCaptureFixture, path: str,
                                                   body: bytes, status: int, requested: str) -> None:
    answer, record = refused(gateway, path, body, caplog)
    assert (answer, record["requested_model"], record["client"]) == (status, requested, "team")


def test_a_client_over_its_rate_is_recorded_with_its_model(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    first = refused(gateway, CHAT, chat("nope-model"), caplog, key=LIMITED)
    assert first[0] == 404  # the minute's one request
    status, record = refused(gateway, CHAT, chat("known"), caplog, key=LIMITED)
    assert (status, record["requested_model"], record["client"]) == (429, "known", "limited")


def test_a_gemini_request_refused_at_its_headers_names_the_model_in_its_path(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    status, record = refused(gateway, GEMINI_PATH.format("known"), None, caplog)  # no body
    assert (status, record["requested_model"]) == (400, "known")
    status, record = refused(gateway, GEMINI_PATH.format("gemini-x"), b"{}", caplog, key=None)  # no client key
    assert (status, record["requested_model"], record["client"]) == (401, "gemini-x", None)
    status, record = refused(gateway, CHAT, chat("known"), caplog, key=None)
    assert (status, record["requested_model"]) == (401, "")  # its body is never read
