"""More streams than the processor may hold: each is served whole or refused at once with 503, retry-after and the
client's own envelope — never cut, never Envoy's bare 504. Real Envoy, the processor and its relay, and fake
providers that hold their answers until the test releases them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import STATE_KEY, RedisServer, Stack, provider_config
from tests.fakes import FakeProvider, chat_stream, messages_stream
from tests.waits import eventually

SSE = {"content-type": "text/event-stream"}
CHAT = {"model": "gpt-5-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-haiku-5-5", "max_tokens": 5, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}


def _config(fakes: dict[str, FakeProvider], **processor: Any) -> dict[str, Any]:
    return {"providers": provider_config(fakes), "discovery": False, "fast_path": False, "failover": {"attempts": 1},
            "processor": processor}


def _chat(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=30)


def _messages(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/messages", json=MESSAGES, headers={"anthropic-version": "2023-06-01"}, timeout=30)


def _refused(answer: httpx.Response) -> bool:
    """A 503 the client can act on: retry-after, and the gateway's refusal in the client's own envelope."""
    if answer.status_code != 503 or answer.headers.get("retry-after") != "1":
        return False
    doc = answer.json()
    if answer.request.url.path == "/v1/messages":
        return doc["type"] == "error" and doc["error"]["type"] == "api_error" and "too busy" in doc["error"]["message"]
    return doc["error"]["code"] == "gateway_overloaded" and doc["error"]["type"] == "service_unavailable_error"


def _whole(answer: httpx.Response, expected: bytes) -> bool:
    return answer.status_code == 200 and answer.content == expected


def test_streams_past_max_requests_are_refused_at_once_in_each_clients_envelope_and_held_ones_end_whole(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_config(fakes, max_requests=2))
    release = threading.Event()
    fakes["openai"].script(200, SSE, chat_stream("gpt-5-mini"), times=2, hold=release)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(_chat, stack.url) for _ in range(2)]
        fakes["openai"].wait_for(2)  # both streams are open, relayed, waiting on their provider
        refused = [_chat(stack.url), _messages(stack.url)]
        assert all(_refused(answer) for answer in refused), [(a.status_code, a.text) for a in refused]
        assert not fakes["anthropic"].requests  # refused before anything went upstream
        release.set()
        answers = [future.result() for future in held]
    assert all(_whole(answer, chat_stream("gpt-5-mini")) for answer in answers)
    stack.wait_log("gateway_overloaded", 2)
    again = _chat(stack.url)  # the places were given back
    assert again.status_code == 200 and again.content.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_burst_past_the_limit_gets_whole_streams_and_refusals_never_a_cut_or_a_bare_504(
        workers: int, fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack],
        redis_server: RedisServer) -> None:
    state = {"state": {"redis": {"url": redis_server.url, "key": STATE_KEY}}} if workers > 1 else {}
    stack = make_stack({**_config(fakes, max_requests=1, workers=workers), **state})
    release = threading.Event()
    burst = 12
    fakes["openai"].script(200, SSE, chat_stream("gpt-5-mini"), times=burst, hold=release)
    fakes["anthropic"].script(200, SSE, messages_stream("claude-haiku-5-5"), times=burst, hold=release)
    calls = [_chat, _messages] * (burst // 2)
    with ThreadPoolExecutor(burst) as pool:
        futures = [pool.submit(call, stack.url) for call in calls]

        def settled() -> bool:  # every request is held at its provider or already answered

            done = sum(f.done() for f in futures)
            return done + len(fakes["openai"].requests) + len(fakes["anthropic"].requests) >= burst
        eventually(settled, "every request of the burst is held upstream or refused")
        release.set()
        answers = [f.result() for f in futures]
    expected = {"/v1/chat/completions": chat_stream("gpt-5-mini"), "/v1/messages": messages_stream("claude-haiku-5-5")}
    kinds = ["whole" if _whole(a, expected[a.request.url.path]) else "refused" if _refused(a)
             else f"{a.status_code} {a.text[:120]}" for a in answers]
    assert set(kinds) == {"whole", "refused"}, kinds  # each is one or the other; both happen past the limit
    assert kinds.count("refused") >= burst - 4 * workers, kinds  # at most about the limit went upstream
    assert kinds.count("whole") == len(fakes["openai"].requests) + len(fakes["anthropic"].requests)
    assert all(json.loads(a.content) for a, k in zip(answers, kinds, strict=True) if k == "refused")
