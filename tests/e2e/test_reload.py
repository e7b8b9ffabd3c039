"""Hot reload through the real stack: the config file changes (or SIGHUP) and the running gateway follows."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import SECRETS, STATE_KEY, RedisServer, Stack, provider_config
from tests.fakes import FakeProvider
from tests.waits import eventually

KEY_A, KEY_B = "reload-key-a-0123456789", "reload-key-b-0123456789"
CHAT = [{"role": "user", "content": "hi"}]


def _config(stack: Stack) -> dict[str, Any]:
    return dict(yaml.safe_load(stack.config_path.read_text()))


def _write(stack: Stack, config: dict[str, Any]) -> None:
    """As an editor or a ConfigMap update does: the whole file replaced at once."""
    tmp = stack.config_path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config))
    os.replace(tmp, stack.config_path)


def _ask(stack: Stack, model: str, key: str = KEY_A) -> httpx.Response:
    return httpx.post(stack.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": CHAT}, timeout=10)


@pytest.fixture
def stack(fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> Iterator[Stack]:
    yield make_stack({"providers": provider_config(fakes), "discovery": False, "strategy": "none",
                      "clients": {"keys": [{"name": "a", "key": KEY_A}]}})


def test_aliases_keys_fallbacks_and_provider_keys_apply_without_a_restart_and_no_request_is_lost(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    assert _ask(stack, "quick").status_code == 404
    assert _ask(stack, "gpt-5-mini", KEY_B).status_code == 401
    answers: list[int] = []
    stop = threading.Event()

    def load() -> None:  # traffic all through the reload: none of it may fail
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                answers.append(client.post(stack.url + "/v1/chat/completions",
                                           headers={"authorization": f"Bearer {KEY_A}"},
                                           json={"model": "gpt-5-mini", "messages": CHAT}).status_code)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        config = _config(stack)
        config["aliases"] = {"quick": "gpt-4o-mini"}
        config["clients"] = {"keys": [{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_B}]}
        config["fallbacks"] = {"claude-haiku-5-5": ["claude-haiku-4-5"]}
        config["failover"] = {"statuses": [418, 429]}
        config["providers"]["openai"]["api_key"] = "sk-openai-rotated-key"
        _write(stack, config)
        stack.wait_log("config reloaded (the config file changed)")
        reloaded = len(answers)
        eventually(lambda: len(answers) >= reloaded + 10, "ten more answers after the reload")
    finally:
        stop.set()
        loader.join()
    assert set(answers) == {200}
    fakes["openai"].reset()
    served = _ask(stack, "quick", KEY_B)
    assert served.status_code == 200 and served.headers["x-extproc-model"] == "gpt-4o-mini"
    assert fakes["openai"].requests[-1].headers["authorization"] == "Bearer sk-openai-rotated-key"
    fakes["anthropic"].script(418)  # a status failover did not retry before the reload
    moved = httpx.post(stack.url + "/v1/messages", headers={"x-api-key": KEY_B},
                       json={"model": "claude-haiku-5-5", "max_tokens": 5, "messages": CHAT})
    assert moved.status_code == 200 and moved.headers["x-extproc-model"] == "claude-haiku-4-5"
    logs = stack.logs()
    assert "aliases" in logs and "sk-openai-rotated-key" not in logs and KEY_B not in logs


def test_an_invalid_file_keeps_the_running_config_and_says_which_key(stack: Stack) -> None:
    config = _config(stack)
    config["strategy"] = "fastest-please"
    config["aliases"] = {"quick": "gpt-4o-mini"}
    _write(stack, config)
    stack.wait_log("the running config is kept")
    assert "strategy: 'fastest-please' is not one of" in stack.logs()
    assert _ask(stack, "gpt-5-mini").status_code == 200
    assert _ask(stack, "quick").status_code == 404  # nothing of the invalid file was applied


def test_a_change_envoy_must_take_is_logged_as_needing_a_restart_and_not_applied(
        stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    config = _config(stack)
    config["providers"]["extra"] = {"base_url": fakes["groq"].base_url, "apis": {"openai": "/v1"}, "api_key": "k-x"}
    config["models"] = [{"id": "extra-model", "provider": "extra", "context_window": 1000}]
    config["listen"] = {**config["listen"], "port": stack.port + 1000}
    _write(stack, config)
    stack.wait_log("only apply on a restart of extproc")
    logs = stack.logs()
    assert "providers.extra (added)" in logs and "listen" in logs
    assert _ask(stack, "extra-model").status_code == 404
    assert _ask(stack, "gpt-5-mini").status_code == 200


def test_sighup_reloads_every_worker_even_when_the_file_looks_unchanged(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack({"providers": provider_config(fakes), "discovery": False, "processor": {"workers": 2},
                        "state": {"redis": {"url": redis_server.url, "prefix": f"hup{time.monotonic_ns()}:",
                                            "key": STATE_KEY}},
                        "aliases": {"quick": "gpt-6.2-sol"}})
    before = os.stat(stack.config_path)
    text = stack.config_path.read_text()
    assert "quick: gpt-6.2-sol" in text
    with stack.config_path.open("r+") as f:  # same size, same inode, same mtime: only a SIGHUP tells
        f.write(text.replace("quick: gpt-6.2-sol", "quick: gpt-6-luna "))
    os.utime(stack.config_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(stack.config_path)  # what the poll compares: the file looks as it did
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    os.kill(stack.proc.pid, signal.SIGHUP)
    stack.wait_log("config reloaded (SIGHUP)", count=2)  # both workers
    for _ in range(4):  # whichever worker Envoy picks
        served = httpx.post(stack.url + "/v1/chat/completions", json={"model": "quick", "messages": CHAT})
        assert served.status_code == 200 and served.headers["x-extproc-model"] == "gpt-6-luna"
    assert stack.proc.poll() is None
    logs = stack.logs()
    assert "config reloaded (the config file changed)" not in logs  # only the SIGHUP reloaded it, in each worker
    assert SECRETS["openai"] not in logs
