"""Same-request failover through a real Envoy: the request whose attempt fails still succeeds.

Each test has its own providers (pointing at the shared fakes), keys and models, so the cooldowns one
test causes never reach another, in any order. The SDKs run with max_retries=0: every retry seen here
is the gateway's own, inside the one client request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Stack, free_port
from tests.fakes import FakeProvider, Recorded

CHAT = [{"role": "user", "content": "hi"}]
# name → (fake it points at, its keys)
LANES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rl-primary": ("openai", ("k-rl-primary",)), "rl-backup": ("groq", ("k-rl-backup",)),
    "twokeys": ("openai", ("k-two-1", "k-two-2")),
    "stall-primary": ("mistral", ("k-stall-primary",)), "stall-backup": ("groq", ("k-stall-backup",)),
    "allfail-primary": ("openai", ("k-allfail-primary",)), "allfail-backup": ("mistral", ("k-allfail-backup",)),
    "stream-primary": ("openai", ("k-stream-primary",)), "stream-backup": ("groq", ("k-stream-backup",)),
    "learn-primary": ("openai", ("k-learn-primary",)), "learn-backup": ("groq", ("k-learn-backup",)),
    "busy-primary": ("openai", ("k-busy-primary",)), "busy-backup": ("groq", ("k-busy-backup",)),
    "probe-primary": ("openai", ("k-probe-primary",)),
    "down-backup": ("groq", ("k-down-backup",)),
}
STALL_TIMEOUT = 3  # s: failover.first_byte_timeout of the stalled-provider test (its healthy backup answers well
# within it; the stalled one never does, as it is held until the test ends)
PAIRS = {"rl": ("rl-primary", "rl-backup"), "stall": ("stall-primary", "stall-backup"),
         "allfail": ("allfail-primary", "allfail-backup"), "stream": ("stream-primary", "stream-backup"),
         "learn": ("learn-primary", "learn-backup"), "busy": ("busy-primary", "busy-backup"),
         "down": ("down", "down-backup")}


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
            "capabilities": ["tools", "streaming"]}


def lanes_config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    """Every lane's provider, model and fallback. Attempts have the default first-byte timeout (minutes): only
    the test of a stalled provider has a short one, on a stack of its own, so that no other test's answer can be
    late enough to count as a stall."""
    providers: dict[str, Any] = {name: {"base_url": fakes[fake].base_url, "apis": {"openai": "/v1"},
                                        "api_keys": list(keys)} for name, (fake, keys) in LANES.items()}
    providers["probe-primary"]["discovery"] = {"path": "/v1/models", "style": "openai"}  # what a probe asks
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there: every connection is refused
    providers["down"] = {"base_url": nowhere, "apis": {"openai": "/v1"}, "api_key": "k-down"}
    providers["down-anthropic"] = {"base_url": nowhere, "apis": {"anthropic": "/v1"}, "api_key": "k-down-an",
                                   "auth": "x-api-key"}
    models = [_model(f"{name}-model", name) for name in (*LANES, "down", "down-anthropic")]
    return {
        "providers": providers,
        "models": models,
        "fallbacks": {f"{primary}-model": [f"{backup}-model"] for primary, backup in PAIRS.values()},
        "strategy": "none",
        "fast_path": False,  # the full path, which learns before the next request is routed: a fast route is
        # withdrawn a moment after (test_fast_path watches it follow health)
        "health": {"backoff_base": 0.001, "backoff_max": 0.001,  # a 429 without retry-after barely cools
                   "probe_interval": 0.3},
    }


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    stack = make_module_stack(lanes_config(fakes))
    yield stack
    logs = stack.logs()
    assert not [key for _, keys in LANES.values() for key in keys if key in logs], "a key reached the logs"


@pytest.fixture
def oa(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)


def sent_with(request: Recorded) -> tuple[str, str]:
    return request.headers["authorization"].removeprefix("Bearer "), request.json()["model"]


def without_model(request: Recorded) -> dict[str, Any]:
    return {k: v for k, v in request.json().items() if k != "model"}


def test_a_429_is_answered_by_the_fallback_in_the_same_request(oa, fakes):
    fakes["openai"].script(429, {"retry-after": "30"})
    raw = oa.chat.completions.with_raw_response.create(model="rl-primary-model", messages=CHAT, temperature=0.3)
    assert raw.parse().choices[0].message.content == "hello from rl-backup-model"
    assert (raw.headers["x-extproc-attempts"], raw.headers["x-extproc-model"], raw.headers["x-extproc-provider"],
            raw.headers["x-extproc-route"]) == ("2", "rl-backup-model", "rl-backup", "fallback:chain")
    (first,) = fakes["openai"].wait_for(1)
    (second,) = fakes["groq"].wait_for(1)
    assert sent_with(first) == ("k-rl-primary", "rl-primary-model")
    assert sent_with(second) == ("k-rl-backup", "rl-backup-model")
    # each attempt carried the client's body apart from the model, and none of the gateway's own headers
    # but the client's API family (Envoy's own replies on the way to the provider use it)
    assert without_model(first) == without_model(second) == {"messages": CHAT, "temperature": 0.3}
    assert int(second.headers["content-length"]) == len(second.body)
    assert [h for h in (*first.headers, *second.headers) if h.startswith("x-extproc-")] == ["x-extproc-api"] * 2


def test_the_failed_attempt_teaches_the_next_request(oa, fakes, stack):
    fakes["openai"].script(429, {"retry-after": "30"})
    oa.chat.completions.create(model="learn-primary-model", messages=CHAT)
    card = stack.unavailable_card("learn-primary-model")  # the failed attempt, learned from Envoy's access log
    assert "429" in card["unavailable_reason"] and "retry-after 30" in card["unavailable_reason"]
    raw = oa.chat.completions.with_raw_response.create(model="learn-primary-model", messages=CHAT)
    assert (raw.headers["x-extproc-attempts"], raw.headers["x-extproc-model"]) == ("1", "learn-backup-model")
    assert len(fakes["openai"].requests) == 1  # the cooling primary was not tried again


def test_a_503_is_retried_on_the_same_model_with_its_other_key(oa, fakes):
    fakes["openai"].script(503)
    raw = oa.chat.completions.with_raw_response.create(model="twokeys-model", messages=CHAT)
    assert raw.parse().choices[0].message.content == "hello from twokeys-model"
    assert raw.headers["x-extproc-attempts"] == "2" and raw.headers["x-extproc-model"] == "twokeys-model"
    first, second = fakes["openai"].wait_for(2)
    assert {sent_with(first)[0], sent_with(second)[0]} == {"k-two-1", "k-two-2"}
    assert sent_with(first)[1] == sent_with(second)[1] == "twokeys-model"


def test_a_provider_that_refuses_connections_is_failed_over(oa, fakes):
    raw = oa.chat.completions.with_raw_response.create(model="down-model", messages=CHAT)
    assert raw.headers["x-extproc-attempts"] == "2" and raw.headers["x-extproc-model"] == "down-backup-model"
    assert sent_with(fakes["groq"].wait_for(1)[0]) == ("k-down-backup", "down-backup-model")


def test_a_stalled_provider_past_the_first_byte_timeout_is_failed_over(fakes, make_stack):
    stack = make_stack({**lanes_config(fakes), "failover": {"first_byte_timeout": STALL_TIMEOUT}})
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    release = threading.Event()
    fakes["mistral"].script(200, hold=release)  # no headers until the test is over: past any timeout
    try:
        raw = oa.chat.completions.with_raw_response.create(model="stall-primary-model", messages=CHAT)
    finally:
        release.set()
    assert raw.parse().choices[0].message.content == "hello from stall-backup-model"
    assert raw.headers["x-extproc-attempts"] == "2"
    assert len(fakes["mistral"].requests) == 1  # the stalled attempt was made, and abandoned
    assert sent_with(fakes["groq"].wait_for(1)[0]) == ("k-stall-backup", "stall-backup-model")


def test_when_every_candidate_fails_the_client_gets_the_last_answer(oa, fakes):
    fakes["openai"].script(429, {"retry-after": "7"})
    fakes["mistral"].script(503)
    with pytest.raises(openai.APIStatusError) as caught:
        oa.chat.completions.create(model="allfail-primary-model", messages=CHAT)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-extproc-attempts"] == "2"
    assert caught.value.response.json()["error"]["message"]  # the provider's own error, in the client's API
    assert len(fakes["openai"].requests) == 1 and len(fakes["mistral"].requests) == 1


def test_a_streaming_request_fails_over_before_the_first_byte(oa, fakes):
    fakes["openai"].script(429)
    stream = oa.chat.completions.create(model="stream-primary-model", messages=CHAT, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "hello from stream-backup-model"
    assert fakes["groq"].wait_for(1)[0].json()["stream"] is True


def test_an_unreachable_provider_with_no_fallback_answers_in_the_clients_envelope(stack):
    import anthropic

    client = anthropic.Anthropic(base_url=stack.url, api_key="client-key", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="down-anthropic-model", max_tokens=5, messages=CHAT)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert caught.value.response.json()["type"] == "error"  # Anthropic's envelope, from Envoy's own reply


def test_failover_works_with_two_processor_processes_behind_one_envoy(tmp_path, fakes):
    """The router-level stream and an attempt's stream land on different processes: nothing links them."""
    import subprocess
    import sys

    import yaml

    from extproc.runner import envoy_binary
    from tests.conftest import stop_processes, wait_log_line, wait_serving

    port, ports, relays = free_port(), [free_port(), free_port()], [free_port(), free_port()]
    base = {"listen": {"port": port}, "admin": {"port": free_port()}, "discovery": False,
            "auth": {"store": str(tmp_path / "accounts.json")},
            "providers": {"two-a": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                                    "api_key": "k-two-procs-a"},
                          "two-b": {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"},
                                    "api_key": "k-two-procs-b"}},
            "models": [_model("two-a-model", "two-a"), _model("two-b-model", "two-b")],
            "fallbacks": {"two-a-model": ["two-b-model"]}, "strategy": "none", "log_level": "debug"}
    serves, logs = [], []
    for i, processor_port in enumerate(ports):
        config = {**base, "processor": {"port": processor_port, "relay_port": relays[i],
                                        "token": "two-processes-shared-secret-42"}, "metrics": False}
        (tmp_path / f"c{i}.yaml").write_text(yaml.safe_dump(config))
        logs.append((tmp_path / f"serve{i}.log").open("wb"))
        serves.append(subprocess.Popen([sys.executable, "-m", "extproc", "serve", "--config",
                                        str(tmp_path / f"c{i}.yaml")], stdout=logs[i], stderr=subprocess.STDOUT))
    rendered = yaml.safe_load(subprocess.run(
        [sys.executable, "-m", "extproc", "envoy-config", "--config", str(tmp_path / "c0.yaml")],
        capture_output=True, text=True, check=True).stdout)
    (processor,) = [c for c in rendered["static_resources"]["clusters"] if c["name"] == "extproc"]
    (relay,) = [c for c in rendered["static_resources"]["clusters"] if c["name"] == "relay"]
    for cluster, endpoints in ((processor, ports), (relay, relays)):
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in endpoints]
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(rendered))
    envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart",
                              "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for i in range(2):
            wait_log_line(tmp_path / f"serve{i}.log", "processor listening on")
        wait_serving(f"http://127.0.0.1:{port}", [envoy, *serves])
        fakes["openai"].script(429, times=12)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="client-key", max_retries=0)
        attempts = []
        for _ in range(12):
            raw = client.chat.completions.with_raw_response.create(model="two-a-model", messages=CHAT)
            assert raw.parse().choices[0].message.content == "hello from two-b-model"
            attempts.append(raw.headers["x-extproc-attempts"])
        # Health is still per process (only the one reading Envoy's access log learns the 429), so a request
        # routed by the other one tries two-a first again: every request still ends on two-b, in one call.
        assert set(attempts) <= {"1", "2"} and "2" in attempts
        assert {sent_with(r) for r in fakes["groq"].wait_for(12)} == {("k-two-procs-b", "two-b-model")}
    finally:
        stop_processes([envoy, *serves])
        for log in logs:
            log.close()
    texts = [(tmp_path / f"serve{i}.log").read_text() for i in range(2)]

    def rids(text: str, line_kind: str) -> set[str]:
        return {line.split("rid=")[1].split()[0] for line in text.splitlines() if f'"{line_kind} rid=' in line}

    routed, built = [rids(text, "route") for text in texts], [rids(text, "attempt") for text in texts]
    assert all(routed) and any(built)
    assert (routed[0] & built[1]) | (routed[1] & built[0]), \
        "some request was routed by one process and its second attempt built by the other"
    assert not [key for key in ("k-two-procs-a", "k-two-procs-b") for text in texts if key in text]


def test_many_requests_fail_over_at_once(stack, fakes):
    """Envoy allows 3 retries in flight by default; the gateway's own limit must let every one fail over."""
    from concurrent.futures import ThreadPoolExecutor

    fakes["openai"].script(429, times=16)  # no retry-after: each cools the primary for a millisecond only

    def one(_: int) -> tuple[str, str]:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="busy-primary-model", messages=CHAT)
        return raw.parse().choices[0].message.content or "", raw.headers["x-extproc-model"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    assert answers == [("hello from busy-backup-model", "busy-backup-model")] * 16


def test_a_forged_handled_header_does_not_skip_an_attempts_own_processor(stack, fakes):
    """The router-level answer removes what it does not set: the attempt is still built, with our key."""
    response = httpx.post(f"{stack.url}/v1/chat/completions", json={"model": "rl-backup-model", "messages": CHAT},
                          headers={"x-extproc-handled": "1", "x-extproc-learn": "1", "authorization": "Bearer mine",
                                   "x-envoy-retry-on": "4xx", "x-extproc-attempt": "1 forged forged/x chat 0 1"})
    assert response.status_code == 200
    (seen,) = fakes["groq"].wait_for(1)
    assert sent_with(seen) == ("k-rl-backup", "rl-backup-model")


def test_a_stream_cut_after_its_first_byte_ends_with_an_error_event_not_a_short_answer(oa, fakes, stack):
    """Past the first byte there is no failing over: the stream ends with an error in the client's own format,
    which the SDK raises, never a silent end it would read as a complete answer."""
    from tests.fakes import chat_stream

    fakes["openai"].script(200, {"content-type": "text/event-stream"}, chat_stream("stream-primary-model"),
                           cut_after=1)
    stream = oa.chat.completions.create(model="stream-primary-model", messages=CHAT, stream=True)
    received = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["hello"]  # what came before the cut, and then the error event
    assert "stream failed before the answer was complete" in str(failed.value)
    stack.wait_log("the stream failed after")  # the relay says so


def test_a_key_suspended_after_a_401_is_probed_and_back_as_soon_as_its_provider_takes_it(oa, fakes, stack):
    fakes["openai"].script(401)
    with pytest.raises(openai.AuthenticationError):  # a 401 is not retried: the client's request gets it
        oa.chat.completions.create(model="probe-primary-model", messages=CHAT)
    stack.wait_log("probe: credential probe-primary:key1 is taken again")
    assert "suspended until" in stack.logs()  # it was suspended first (for health.auth_suspension, 1800 s)
    # The probe is a model-list call with this key (other credentials of the fake may list models too).
    assert "Bearer k-probe-primary" in [r.headers.get("authorization") for r in fakes["openai"].list_requests]
    assert httpx.get(f"{stack.url}/v1/models/probe-primary-model").json()["available"] is True
    assert oa.chat.completions.create(model="probe-primary-model", messages=CHAT).choices[0].message.content
