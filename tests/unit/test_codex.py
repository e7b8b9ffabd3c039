"""ChatGPT's Codex backend: every request on it has the body the backend takes, whatever the client sent (a
Responses body as it came, a Chat Completions one translated), and what it cannot do is told to the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from extproc.config import parse_settings
from extproc.core.errors import ConfigError
from extproc.core.providers import AuthStyle
from extproc.core.secrets import StaticSecrets
from extproc.core.settings import Credential
from extproc.core.windows import WindowLevel, WindowState, event_headers, read_windows, stream_windows
from extproc.request.actions import Mutate, Reply
from extproc.request.exchange import Exchange
from extproc.request.gateway import Gateway
from extproc.request.transforms import PROVIDER_TRANSFORMS, TRANSFORMS
from extproc.request.transforms.codex import shape
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import ASKS_FOR_THE_ANSWER, model, settings
from tests.unit.test_attempt import attempt, gateway_for, route, shared_headers

RESPONSES, CHAT = "/v1/responses", "/v1/chat/completions"
CHATGPT = parse_settings({}, {}).providers["chatgpt"]
REFUSED, LITE = CHATGPT.drop_fields, CHATGPT.lite_header  # the built-in entry's facts
CODEX_LIKE = {"base_url": "https://cx.example.com", "apis": {"openai": {"path": "/backend-api/codex",
                                                                         "endpoints": ["responses"]}},
              "stream_only": True, "transform": "codex", "drop_fields": list(REFUSED), "lite_header": LITE,
              "api_key": "cx-key"}


@pytest.fixture
def codex(clock: Clock) -> Gateway:
    return gateway_for(clock, providers={"cx": CODEX_LIKE, "oa": {"base_url": "https://oa.example.com",
                                                                  "apis": {"openai": "/v1"}, "api_key": "oa-key"}},
                       models=[model("cx-model", "cx"), model("oa-model", "oa")], strategy="none")


def sent(gw: Gateway, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The body the backend gets for this client request (its first attempt, built by its own processor)."""
    client = {":method": "POST", ":path": path}
    first = route(gw, path, doc, client)
    _, built = attempt(gw, first, 1, "cx", shared_headers(client, first), json.dumps(doc).encode())
    assert isinstance(built, Mutate) and built.body is not None, built
    assert built.set_headers[":path"] == "/backend-api/codex/responses"
    return dict(json.loads(built.body))


@pytest.mark.parametrize("field", ["max_output_tokens", "temperature", "top_p", "user", "truncation",
                                   "prompt_cache_retention", "safety_identifier", "max_completion_tokens"])
def test_each_refused_field_a_responses_client_sends_is_taken_off(codex, field):
    body = sent(codex, RESPONSES, {"model": "cx-model", "input": "hi", field: 1, "stream": True})
    assert field not in body
    assert body["input"] == "hi" and body["stream"] is True and body["store"] is False and body["instructions"] == ""


def test_a_whole_answer_asked_for_goes_streamed_with_the_system_prompt_as_instructions(codex):
    body = sent(codex, RESPONSES, {"model": "cx-model", "store": True, "input": [
        {"role": "system", "content": "Be brief."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Answer in French."}]},
        {"role": "user", "content": "hi"}, {"role": "system", "content": "Now in German."}]})
    assert body["instructions"] == "Be brief.\n\nAnswer in French."
    assert body["input"] == [{"role": "user", "content": "hi"}, {"role": "developer", "content": "Now in German."}]
    assert body["stream"] is True and body["store"] is False  # collected for the client


def test_a_chat_client_is_translated_and_its_sampling_and_limits_never_reach_the_backend(codex):
    body = sent(codex, CHAT, {"model": "cx-model", "temperature": 0.2, "top_p": 0.9, "max_tokens": 50,
                              "messages": [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "hi"}]})
    assert not {"temperature", "top_p", "max_output_tokens", "max_tokens"} & set(body)
    assert body["instructions"] == "Be brief." and body["stream"] is True and body["store"] is False
    assert body["input"][0]["role"] == "user"


def test_instructions_the_client_sent_are_kept_and_a_body_already_right_is_left_as_it_came():
    doc: dict[str, Any] = {"model": "m", "instructions": "sys", "input": [{"role": "developer", "content": "x"}],
                           "store": False, "stream": True}
    assert shape(doc) is False and doc["instructions"] == "sys"
    doc["input"].insert(0, {"role": "system", "content": "more"})  # instructions said: the message stays, as developer
    assert shape(doc) is True and doc["instructions"] == "sys" and doc["input"][0]["role"] == "developer"
    image = {"role": "system", "content": [{"type": "input_image", "image_url": "data:,"}]}
    odd: dict[str, Any] = {"input": [image], "instructions": None}
    assert shape(odd) is True and odd["instructions"] == "" and odd["input"][0]["role"] == "developer"


def test_previous_response_id_is_refused_in_the_clients_envelope_before_anything_goes_upstream(codex):
    ex = Exchange(codex)
    assert ex.request_headers({":method": "POST", ":path": RESPONSES}, False) == ASKS_FOR_THE_ANSWER
    reply = asyncio.run(ex.request_body(json.dumps(
        {"model": "cx-model", "input": "and then?", "previous_response_id": "resp_1"}).encode()))
    assert isinstance(reply, Reply) and reply.status == 400
    error = json.loads(reply.body)["error"]
    assert error["code"] == "unsupported_by_upstream" and "previous_response_id" in error["message"]
    assert "whole conversation in `input`" in error["message"]


class LoginTokens(StaticSecrets):
    async def secret(self, credential: Credential) -> str:
        return "login-token" if credential.account else credential.secret


def test_previous_response_id_passes_over_a_codex_login_to_a_key_that_can_continue_it(clock):
    """A Codex login serves its provider's models beside that provider's keys: a request that continues a stored
    conversation goes to a key, even where the login would go first."""
    gw = Gateway(Runtime(settings(providers={"cx": {**CODEX_LIKE, "api_key": None}, "oa": {
        "base_url": "https://oa.example.com", "apis": {"openai": "/v1"}, "api_key": "oa-key", "prefer": "login"}},
        models=[model("oa-model", "oa")], strategy="none"), clock=clock), secrets=LoginTokens())
    gw.runtime.publish_logins((Credential(id="codex-1", provider="oa", upstream="cx", account="codex-1",
                                          auth=AuthStyle.BEARER),), {})
    ask = {"model": "oa-model", "input": "and then?"}
    assert route(gw, RESPONSES, ask).set_headers["x-extproc-provider"] == "cx"  # the login goes first
    first = route(gw, RESPONSES, {**ask, "previous_response_id": "resp_1"})
    assert first.set_headers["x-extproc-provider"] == "oa" and first.set_headers["x-envoy-max-retries"] == "0"


# ---------------------------------------------------------------- the login's windows: headers and the stream event

CODEX_WINDOWS = parse_settings({}, {}).flows["codex"].use.windows
T = 1_700_000_000


def headers_of(primary: float, secondary: float, **more: str) -> dict[str, str]:
    return {"x-codex-primary-used-percent": str(primary), "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(T + 600), "x-codex-secondary-used-percent": str(secondary),
            "x-codex-secondary-window-minutes": "10080", "x-codex-secondary-reset-at": str(T + 86400), **more}


def test_windows_are_named_by_their_minutes_and_a_full_one_with_credits_left_does_not_stop_the_login():
    assert CODEX_WINDOWS is not None
    state = read_windows(CODEX_WINDOWS, headers_of(35, 80))
    assert state == WindowState(0.8, T + 86400, False, (WindowLevel("5h", 0.35, T + 600),
                                                        WindowLevel("7d", 0.8, T + 86400)))
    full = headers_of(100, 40)
    assert read_windows(CODEX_WINDOWS, full).exhausted  # type: ignore[union-attr]
    spent = {"x-codex-credits-has-credits": "False", "x-codex-credits-unlimited": "False"}
    assert read_windows(CODEX_WINDOWS, {**full, **spent}).exhausted  # type: ignore[union-attr]
    for going_on in ({**spent, "x-codex-credits-has-credits": "True"}, {**spent, "x-codex-credits-unlimited": "true"}):
        assert not read_windows(CODEX_WINDOWS, {**full, **going_on}).exhausted  # type: ignore[union-attr]
    odd = {**headers_of(10, 20), "x-codex-primary-window-minutes": "45", "x-codex-secondary-window-minutes": "x"}
    assert [lv.name for lv in read_windows(CODEX_WINDOWS, odd).levels] == ["45m", "secondary"]  # type: ignore[union-attr]


def rate_limits_event(primary: float, secondary: float, **credits: bool) -> bytes:
    doc = {"type": "codex.rate_limits", "plan_type": "pro", "rate_limits": {
        "allowed": True, "limit_reached": False,
        "primary": {"used_percent": primary, "window_minutes": 300, "reset_after_seconds": 600, "reset_at": T + 600},
        "secondary": {"used_percent": secondary, "window_minutes": 10080, "reset_at": T + 86400}}}
    if credits:
        doc["credits"] = {"balance": "0", **credits}
    return b"event: codex.rate_limits\ndata: " + json.dumps(doc).encode() + b"\n\n"


def test_the_rate_limits_event_reads_as_the_headers_do():
    assert CODEX_WINDOWS is not None and CODEX_WINDOWS.event is not None
    payload = rate_limits_event(35, 80).split(b"data: ", 1)[1]
    assert read_windows(CODEX_WINDOWS, event_headers(CODEX_WINDOWS.event, payload) or {}) == \
        read_windows(CODEX_WINDOWS, headers_of(35, 80))
    spent = rate_limits_event(100, 50, has_credits=False, unlimited=False).split(b"data: ", 1)[1]
    assert read_windows(CODEX_WINDOWS, event_headers(CODEX_WINDOWS.event, spent) or {}).exhausted  # type: ignore[union-attr]
    paid = rate_limits_event(100, 50, has_credits=True, unlimited=False).split(b"data: ", 1)[1]
    assert not read_windows(CODEX_WINDOWS, event_headers(CODEX_WINDOWS.event, paid) or {}).exhausted  # type: ignore[union-attr]
    assert event_headers(CODEX_WINDOWS.event, b'{"type":"response.created"}') is None
    assert event_headers(CODEX_WINDOWS.event, b"not json") is None


def test_a_stream_is_read_for_its_event_across_chunks_once_and_never_changed():
    stream = b'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n' + \
        rate_limits_event(12, 34) + b'data: {"type":"response.output_text.delta","delta":"\\"codex.rate_limits\\""}\n\n'
    for cut in range(1, len(stream)):
        reader = stream_windows(CODEX_WINDOWS)
        assert reader is not None
        found = [s for s in (reader.feed(stream[:cut]), reader.feed(stream[cut:])) if s is not None]
        assert [(lv.name, lv.utilization) for lv in found[0].levels] == [("5h", 0.12), ("7d", 0.34)], cut
        assert len(found) == 1 and reader.done
    quiet = stream_windows(CODEX_WINDOWS)
    assert quiet is not None and quiet.feed(b'data: {"type":"response.completed"}\n\n') is None and not quiet.done
    assert stream_windows(parse_settings({}, {}).flows["claude"].use.windows) is None  # no event: nothing is read


def compact(gw: Gateway) -> bytes | None:
    """What the backend gets for the Codex CLI's compact request (None: the body as the CLI sent it)."""
    assert LITE is not None
    client = {":method": "POST", ":path": RESPONSES, LITE: "true"}
    doc = {"model": "cx-model", "input": [{"role": "developer", "content": "the CLI's prompt"}], "stream": True,
           "store": False}
    first = route(gw, RESPONSES, doc, client)
    _, built = attempt(gw, first, 1, "cx", shared_headers(client, first), json.dumps(doc).encode())
    assert isinstance(built, Mutate), built
    return built.body


def test_the_codex_clis_compact_shape_goes_without_instructions_as_it_was_sent(codex):
    assert compact(codex) is None  # nothing to change: it goes as it came


def test_the_compact_requests_header_is_the_providers_data(clock):
    """The header's name is the provider's `lite_header`: configured off, the same request is held to the rules
    of any other (instructions added); renamed, validated and lower-cased like any header name."""
    off = gateway_for(clock, providers={"cx": {**CODEX_LIKE, "lite_header": None}},
                      models=[model("cx-model", "cx")], strategy="none")
    body = compact(off)
    assert body is not None and json.loads(body)["instructions"] == ""
    renamed = parse_settings({"providers": {"chatgpt": {"lite_header": "X-Compact"}}}, {})
    assert renamed.providers["chatgpt"].lite_header == "x-compact"
    with pytest.raises(ConfigError, match="providers.chatgpt.lite_header: expected a non-empty string"):
        parse_settings({"providers": {"chatgpt": {"lite_header": 1}}}, {})


def test_only_a_providers_own_transform_refuses_requests():
    """The exchange asks a candidate's transforms why they refuse a request only when its provider's transform
    has such a rule (ChatGPT's backend) or its provider is a cloud's invoke or Converse call: no other transform may
    have one."""
    assert {name for name, t in TRANSFORMS.items() if t.refuses is not None} <= \
        {*PROVIDER_TRANSFORMS, "invoke", "converse"}
    assert TRANSFORMS["codex"].refuses is not None
