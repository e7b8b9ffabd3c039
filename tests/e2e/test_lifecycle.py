"""`extproc up` as a supervisor: Envoy never outlives it, SIGTERM drains, and the port is free again at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack, free_port, provider_config
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited: only its parent has not reaped it
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    return {"providers": provider_config(fakes), "discovery": False}


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find Envoy's process")
def test_kill_9_of_extproc_up_leaves_no_envoy_behind_and_the_port_is_free(
        config: dict[str, Any], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(config)
    envoys = [c for c in _children(stack.proc.pid) if "envoy" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(envoys) == 1
    stack.proc.send_signal(signal.SIGKILL)
    stack.proc.wait()
    eventually(lambda: _gone(envoys[0]), "Envoy exits with the extproc up that started it")
    again = make_stack({**config, "listen": {"address": "127.0.0.1", "port": stack.port}})
    assert httpx.post(again.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_sigterm_lets_an_open_request_finish_then_both_exit_0(
        config: dict[str, Any], fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(config)
    release = threading.Event()
    fakes["openai"].script(200, body=b'{"id": "c1", "object": "chat.completion", "choices": []}', hold=release)
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(
        httpx.post(stack.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code))
    slow.start()
    try:
        fakes["openai"].wait_for(1)  # the request is at the provider
        stack.proc.send_signal(signal.SIGTERM)
        stack.wait_log("stopping")  # the gateway is shutting down with the request still open…
    finally:
        release.set()  # …and only now does the provider answer
    slow.join(60)
    assert answers == [200]
    assert stack.proc.wait(20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.post(stack.url + "/v1/chat/completions", json=CHAT, timeout=2)


def test_a_restart_right_after_a_burst_of_traffic_gets_the_same_port(
        config: dict[str, Any], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Connections the gateway closed leave sockets in TIME_WAIT: the start-up check must not take them for a
    process holding the port, as Envoy itself does not."""
    port = free_port()
    first = make_stack({**config, "listen": {"address": "127.0.0.1", "port": port}})
    clients = [httpx.Client() for _ in range(20)]  # kept open: the gateway closes them first, at shutdown
    for client in clients:
        assert client.post(first.url + "/v1/chat/completions", json=CHAT).status_code == 200
    assert first.stop() == 0
    for client in clients:
        client.close()
    again = make_stack({**config, "listen": {"address": "127.0.0.1", "port": port}})
    assert httpx.post(again.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_healthz_readyz_and_the_grpc_health_service(make_stack: Callable[[dict[str, Any]], Stack],
                                                    fakes: dict[str, FakeProvider]) -> None:
    import grpc
    import yaml
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stack = make_stack({"providers": provider_config(fakes, without=("groq",)), "discovery": False})
    assert httpx.get(stack.url + "/healthz").json() == {"status": "alive"}
    ready = httpx.get(stack.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "groq" in ready.json()["providers_without_credential"]
    assert "openai" not in ready.json()["providers_without_credential"]
    assert all(fake.requests == [] and fake.list_requests == [] for fake in fakes.values())  # no provider touched
    port = yaml.safe_load(stack.config_path.read_text())["processor"]["port"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
