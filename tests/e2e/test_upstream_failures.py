"""A provider that refuses the connection, resets it or does not answer in time: the client gets the gateway's
own error in its API's envelope, naming the provider and what happened (502, or 504 for a timeout), never
Envoy's flags; health, the log and the next answer name it as what it was.

Through a real Envoy and processor, against real peers on loopback (tests/faults.py): a port nothing listens
on, a server that resets each connection, one that never answers. Each test has providers of its own, so the
cooldown one causes never reaches another.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, free_port
from tests.fakes import FakeProvider, chat_stream
from tests.faults import Blackhole, Resetter
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
# What Envoy itself says of these failures: none of it may reach a client.
ENVOY_TEXT = ("upstream_reset", "reset reason", "delayed_connect", "upstream connect error", "upstream request timeout",
              "per_try_timeout", "%")
# API → its provider's `apis` entry, the request's path for a model, its body for a model
APIS: dict[str, tuple[dict[str, str], Callable[[str], str], Callable[[str], dict[str, Any]]]] = {
    "openai": ({"openai": "/v1"}, lambda m: "/v1/chat/completions", lambda m: {"model": m, "messages": CHAT}),
    "anthropic": ({"anthropic": "/v1"}, lambda m: "/v1/messages",
                  lambda m: {"model": m, "max_tokens": 5, "messages": CHAT}),
    "gemini": ({"gemini": "/v1beta"}, lambda m: f"/v1beta/models/{m}:generateContent",
               lambda m: {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}


def _model(provider: str) -> dict[str, Any]:
    return {"id": f"{provider}-model", "provider": provider, "context_window": 100000, "input_price": 1.0,
            "output_price": 4.0, "capabilities": ["streaming"]}


def _stack_config(providers: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    for name, provider in providers.items():
        provider.setdefault("apis", {"openai": "/v1"})
        provider.setdefault("api_key", f"k-{name}")
    return {"providers": providers, "models": [_model(name) for name in providers], "discovery": False,
            "strategy": "none", **extra}


def _no_key_logged(stack: Stack, providers: dict[str, dict[str, Any]]) -> None:
    logs = stack.logs()
    assert not [name for name, provider in providers.items() if provider["api_key"] in logs], "a key reached the logs"


@pytest.fixture(scope="module")
def resetter() -> Iterator[Resetter]:
    peer = Resetter()
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], resetter: Resetter,
          make_module_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every connection is refused
    providers: dict[str, dict[str, Any]] = {
        **{f"refused-{api}": {"base_url": nowhere, "apis": apis} for api, (apis, _, _) in APIS.items()},
        "refused-learned": {"base_url": nowhere},
        "refused-stream": {"base_url": nowhere},
        "refused-primary": {"base_url": nowhere},
        "backup": {"base_url": fakes["groq"].base_url},
        "reset": {"base_url": resetter.base_url},
        "posing": {"base_url": fakes["mistral"].base_url},
    }
    # Only a 429 is a failover status: an attempt no provider answered fails over all the same.
    stack = make_module_stack(_stack_config(providers, fallbacks={"refused-primary-model": ["backup-model"],
                                                                  "posing-model": ["backup-model"]},
                                            failover={"attempts": 2, "statuses": [429]}))
    yield stack
    _no_key_logged(stack, providers)


def _post(stack: Stack, api: str, provider: str, **body: Any) -> httpx.Response:
    _, path, make_body = APIS[api]
    model = f"{provider}-model"
    return httpx.post(f"{stack.url}{path(model)}", json={**make_body(model), **body}, timeout=30)


def _no_envoy_text(response: httpx.Response) -> None:
    assert not [text for text in ENVOY_TEXT if text in response.text], response.text


def _log_line(stack: Stack, provider: str) -> str:
    """What the processor logs when it learns from the provider's failed attempt."""
    stack.wait_log(f"provider={provider} credential=")
    return next(json.loads(line)["message"] for line in stack.logs().splitlines()
                if f"provider={provider} credential=" in line)


@pytest.mark.parametrize(("api", "expected"), [
    ("openai", {"error": {"message": "Connection refused by provider refused-openai.", "type": "server_error",
                          "param": None, "code": "connection_refused"}}),
    ("anthropic", {"type": "error", "error": {"type": "api_error",
                                              "message": "Connection refused by provider refused-anthropic."}}),
    ("gemini", {"error": {"code": 502, "message": "Connection refused by provider refused-gemini.",
                          "status": "UNAVAILABLE"}}),
])
def test_a_refused_connection_gets_the_gateways_error_in_the_clients_envelope(stack, api, expected):
    response = _post(stack, api, f"refused-{api}")
    assert (response.status_code, response.json()) == (502, expected)
    assert response.headers["x-extproc-failure"] == "connection_refused"
    assert response.headers["x-extproc-provider"] == f"refused-{api}"
    _no_envoy_text(response)


def test_health_the_log_and_the_next_answer_name_a_refusal(stack):
    assert _post(stack, "openai", "refused-learned").status_code == 502
    card = stack.unavailable_card("refused-learned-model")
    assert card["unavailable_reason"].endswith(": connection refused")
    line = _log_line(stack, "refused-learned")
    assert " cooldown until " in line and line.endswith(": connection refused")
    again = _post(stack, "openai", "refused-learned")  # the provider cools: no attempt, the reason and when
    assert again.status_code == 503 and int(again.headers["retry-after"]) >= 1
    assert "(connection refused)" in again.json()["error"]["message"]


def test_a_reset_connection_gets_the_gateways_error_naming_the_provider(stack, resetter):
    response = _post(stack, "openai", "reset")
    assert resetter.reset >= 1  # a request reached the peer and it reset the connection
    assert response.status_code == 502
    assert response.json()["error"] == {"message": "The connection to provider reset was reset before it answered.",
                                        "type": "server_error", "param": None, "code": "connection_reset"}
    _no_envoy_text(response)
    assert _log_line(stack, "reset").endswith(": connection reset before an answer")
    assert stack.unavailable_card("reset-model")["unavailable_reason"].endswith(": connection reset before an answer")


def test_a_refused_connection_fails_over_though_502_is_no_failover_status(stack, fakes):
    response = _post(stack, "openai", "refused-primary")
    assert response.status_code == 200
    assert (response.headers["x-extproc-attempts"], response.headers["x-extproc-provider"]) == ("2", "backup")
    assert fakes["groq"].wait_for(1)[0].json()["model"] == "backup-model"
    assert _log_line(stack, "refused-primary").endswith(": connection refused")


def test_a_streamed_request_to_a_refusing_provider_gets_the_same_error(stack):
    """A stream's attempt goes through the processor's relay, which calls the provider itself."""
    response = _post(stack, "openai", "refused-stream", stream=True)
    assert response.status_code == 502
    assert response.json()["error"] == {"message": "Connection refused by provider refused-stream.",
                                        "type": "server_error", "param": None, "code": "connection_refused"}
    assert _log_line(stack, "refused-stream").endswith(": connection refused")


TIMEOUT = 2.5  # s: failover.first_byte_timeout of the timeout tests' stack (a healthy fake answers well within it)


@pytest.fixture(scope="module")
def silent() -> Iterator[Blackhole]:
    peer = Blackhole()
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def timeout_stack(fakes: dict[str, FakeProvider], silent: Blackhole,
                  make_module_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    """A short first-byte timeout, on a stack of its own: no other test's answer can be late enough to stall."""
    providers: dict[str, dict[str, Any]] = {f"silent-{api}": {"base_url": silent.base_url, "apis": apis}
                                            for api, (apis, _, _) in APIS.items()}
    providers["slowing"] = {"base_url": fakes["mistral"].base_url}
    stack = make_module_stack(_stack_config(providers, failover={"attempts": 1, "first_byte_timeout": TIMEOUT}))
    yield stack
    _no_key_logged(stack, providers)


@pytest.mark.parametrize(("api", "expected"), [
    ("openai", {"error": {"message": "Provider silent-openai did not answer within 2.5 s.", "type": "server_error",
                          "param": None, "code": "upstream_timeout"}}),
    ("anthropic", {"type": "error", "error": {"type": "timeout_error",
                                              "message": "Provider silent-anthropic did not answer within 2.5 s."}}),
    ("gemini", {"error": {"code": 504, "message": "Provider silent-gemini did not answer within 2.5 s.",
                          "status": "DEADLINE_EXCEEDED"}}),
])
def test_a_provider_silent_past_the_first_byte_timeout_gets_a_504_saying_how_long(timeout_stack, silent, api,
                                                                                   expected):
    accepted = silent.accepted
    response = _post(timeout_stack, api, f"silent-{api}")
    assert silent.accepted > accepted  # the attempt reached the provider, which never answered
    assert (response.status_code, response.json()) == (504, expected)
    assert response.headers["x-extproc-failure"] == "upstream_timeout"
    _no_envoy_text(response)
    assert _log_line(timeout_stack, f"silent-{api}").endswith(": no answer within 2.5 s")
    card = timeout_stack.unavailable_card(f"silent-{api}-model")
    assert card["unavailable_reason"].endswith(": no answer within 2.5 s")


def test_a_request_envoy_serves_by_itself_gets_the_same_504(timeout_stack, fakes):
    """The fast path: once the model has been asked for, Envoy routes its requests with no processor message."""
    def fast() -> httpx.Response | None:
        answer = _post(timeout_stack, "openai", "slowing")
        assert answer.status_code == 200
        return answer if answer.headers["x-extproc-route"].endswith("fast") else None
    eventually(fast, "a request for slowing-model goes fast")
    release = threading.Event()
    fakes["mistral"].script(200, hold=release)  # no headers until the test is over: past the attempt's timeout
    try:
        response = _post(timeout_stack, "openai", "slowing")
    finally:
        release.set()
    assert response.headers["x-extproc-route"].endswith("fast")
    assert (response.status_code, response.json()["error"]) == (504, {
        "message": "Provider slowing did not answer within 2.5 s.", "type": "server_error", "param": None,
        "code": "upstream_timeout"})
    assert _log_line(timeout_stack, "slowing").endswith(": no answer within 2.5 s")


@pytest.mark.parametrize("stream", [False, True])
def test_a_providers_own_failure_header_passes_for_nothing(stack, fakes, stream):
    """Only the gateway says what failed: a provider's answer carrying x-extproc-failure is its answer (served,
    not failed over, not learned as a refusal), and the header never reaches the client."""
    answer = chat_stream("posing-model") if stream else json.dumps({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "posing-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "mine"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
    kind = "text/event-stream" if stream else "application/json"
    fakes["mistral"].script(200, {"content-type": kind, "x-extproc-failure": "connection_refused"}, answer)
    response = _post(stack, "openai", "posing", stream=stream)
    assert response.status_code == 200 and "x-extproc-failure" not in response.headers
    assert response.headers["x-extproc-provider"] == "posing" and response.headers["x-extproc-attempts"] == "1"
    served = response.text if stream else response.json()["choices"][0]["message"]["content"]
    assert ("posing-model" if stream else "mine") in served
    assert not fakes["groq"].requests  # the fallback was never asked
