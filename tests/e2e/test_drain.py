"""`extproc drain` (the sidecar's preStop hook) against a running gateway: Envoy stops taking connections, the
requests and streams already open finish within `shutdown.grace`, and a grace that runs out is said."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai

from tests.conftest import Stack
from tests.fakes import FakeProvider, chat_stream
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
ANSWER = b'{"id": "c1", "object": "chat.completion", "choices": []}'


def _config(fakes: dict[str, FakeProvider], grace: float) -> dict[str, Any]:
    return {"discovery": False, "strategy": "none", "shutdown": {"grace": grace},
            "providers": {"dr": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                                 "api_key": "k-drain-key"}},
            "models": [{"id": "dr-model", "provider": "dr", "context_window": 100000,
                        "capabilities": ["tools", "streaming"]}]}


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:  # the test reads what happened
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def _chat(stack: Stack) -> int:
    return httpx.post(stack.url + "/v1/chat/completions", json={"model": "dr-model", "messages": CHAT},
                      timeout=60).status_code


def _drain(stack: Stack) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "extproc", "drain", "--config", str(stack.config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _refused(stack: Stack) -> bool:
    try:
        httpx.get(stack.url + "/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_drain_refuses_new_connections_while_open_requests_and_streams_finish(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_config(fakes, grace=60))
    release = threading.Event()  # the provider answers only once the test has seen the drain take hold
    fakes["openai"].script(200, body=ANSWER, hold=release)
    fakes["openai"].script(200, {"content-type": "text/event-stream"}, chat_stream("dr-model"), hold=release)
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    whole, whole_result = _in_thread(lambda: _chat(stack))
    fakes["openai"].wait_for(1)
    stream, stream_result = _in_thread(lambda: "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="dr-model", messages=CHAT, stream=True) if c.choices))  # type: ignore[call-overload]
    fakes["openai"].wait_for(2)  # both are at the provider, which holds its answers
    try:
        drain = _drain(stack)
        eventually(lambda: _refused(stack), "the drained listener refuses new connections")
        assert drain.poll() is None  # still waiting for the two open requests
    finally:
        release.set()
    whole.join(60)
    stream.join(60)
    assert whole_result == [200] and stream_result == ["hello from dr-model"]
    _, err = drain.communicate(timeout=60)
    assert drain.returncode == 0, err  # every open request finished within the grace
    assert "still open" not in err
    assert _refused(stack) and len(fakes["openai"].requests) == 2  # nothing new got in


def test_a_grace_that_runs_out_before_the_open_request_ends_is_reported(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_config(fakes, grace=1))
    release = threading.Event()
    fakes["openai"].script(200, body=ANSWER, hold=release)
    slow, result = _in_thread(lambda: _chat(stack))
    try:
        fakes["openai"].wait_for(1)
        drain = _drain(stack)
        _, err = drain.communicate(timeout=60)  # the provider holds the answer past the grace, whatever the load
    finally:
        release.set()
    assert drain.returncode == 1
    assert "shutdown.grace (1s) is over with 1 requests still open" in err  # Envoy's own count, at the end
    slow.join(60)  # `extproc drain` cuts nothing itself: Envoy still finishes what it holds
    assert result == [200]
