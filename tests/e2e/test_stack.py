"""The stack as an operator runs it: the checked-in Envoy config, fail-closed, the default config, Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from extproc.bootstrap import render_bootstrap
from extproc.config import load_settings
from extproc.runner import envoy_binary
from tests.conftest import (
    SECRETS,
    Stack,
    free_port,
    provider_config,
    stop_processes,
    wait_envoy_live,
    wait_log_line,
    wait_serving,
)
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_envoy_config_is_what_envoy_config_renders() -> None:
    rendered = subprocess.run([sys.executable, "-m", "extproc", "envoy-config"], capture_output=True, text=True,
                              check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert rendered == (ROOT / "envoy" / "envoy.yaml").read_text(), "run: extproc envoy-config > envoy/envoy.yaml"


def test_checked_in_envoy_config_validates() -> None:
    result = subprocess.run([envoy_binary(), "--mode", "validate", "--disable-hot-restart", "-c",
                             str(ROOT / "envoy" / "envoy.yaml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_fails_closed_when_the_processor_is_down(tmp_path: Path, fakes: dict[str, FakeProvider]) -> None:
    port, admin = free_port(), free_port()
    config = {"listen": {"port": port}, "admin": {"port": admin}, "processor": {"port": free_port()},
              "providers": provider_config(fakes)}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "envoy.yaml").write_text(render_bootstrap(load_settings(tmp_path / "c.yaml")))
    envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart",
                              "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_envoy_live(admin, envoy)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                              json={"model": "gpt-6-luna", "messages": []}, headers={"x-extproc-provider": "openai"})
        assert response.status_code == 502  # in the client's envelope, saying what failed
        assert "could not reach its processor" in response.json()["error"]["message"]
        response = httpx.post(f"http://127.0.0.1:{port}/v1/messages", json={"model": "claude-haiku-5-5"})
        assert response.status_code == 502 and response.json()["type"] == "error"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # Envoy is alive
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code >= 500  # but cannot serve
        # A request Envoy forwarded would have been at a fake before any answer came back: nothing was.
        assert all(not f.requests for f in fakes.values())
    finally:
        stop_processes([envoy])


def test_default_config_without_keys_starts_lists_models_and_explains(
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack({})
    logs = stack.logs()
    assert "no credential for the built-in providers openai, anthropic, gemini, groq, mistral" in logs
    assert "give one a key under providers.<name>.api_key in" in logs
    models = httpx.get(stack.url + "/v1/models").json()["data"]
    assert len(models) >= 15 and not any(m["available"] for m in models)
    response = httpx.post(stack.url + "/v1/chat/completions", json={"model": "gpt-6-luna", "messages": []})
    assert response.status_code == 503 and response.headers["x-should-retry"] == "false"
    assert "OPENAI_API_KEY" in response.json()["error"]["message"]
    # Nothing changes until the config does: the SDK is told not to retry, so it asks once.
    before = stack.logs().count("kind=no_credentials")
    with pytest.raises(openai.APIStatusError):
        openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=2).chat.completions.create(
            model="gpt-6-luna", messages=[{"role": "user", "content": "hi"}])
    assert stack.logs().count("kind=no_credentials") == before + 1


def test_sigint_stops_envoy_and_processor(make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack({})
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(15) == 130  # as a shell reports a command Ctrl-C ended
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", stack.port), timeout=1).close()
    assert "stopping" in stack.logs()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("providers:\n  openai:\n    api_key: ${NOT_SET_ANYWHERE}\n")
    result = subprocess.run([sys.executable, "-m", "extproc", "check", "--config", str(tmp_path / "c.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "providers.openai.api_key" in result.stderr and "NOT_SET_ANYWHERE" in result.stderr


def test_processor_hands_nothing_to_a_stream_without_envoys_token(
        make_stack: Callable[[dict[str, Any]], Stack], fakes: dict[str, FakeProvider]) -> None:
    """`extproc up` shares a fresh secret with its Envoy: another local process cannot get credentials."""
    stack = make_stack({"providers": provider_config(fakes)})
    processor_port = yaml.safe_load(stack.config_path.read_text())["processor"]["port"]
    headers = pb.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=":path", raw_value=b"/v1/chat/completions"),
        base_pb2.HeaderValue(key=":method", raw_value=b"POST")]))
    messages = [pb.ProcessingRequest(request_headers=headers),
                pb.ProcessingRequest(request_body=pb.HttpBody(body=b'{"model":"gpt-6-luna","messages":[]}',
                                                              end_of_stream=True))]
    with grpc.insecure_channel(f"127.0.0.1:{processor_port}") as channel:
        stub = pb_grpc.ExternalProcessorStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Process(iter(messages), timeout=5))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "refused an ext_proc stream" in stack.logs()
    # …while Envoy, which has the token, is served as usual.
    assert httpx.post(stack.url + "/v1/chat/completions",
                      json={"model": "gpt-6-luna", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200


def test_sidecar_shape_serve_beside_a_separately_started_envoy(tmp_path: Path, fakes: dict[str, FakeProvider]) -> None:
    """`extproc serve` plus an Envoy started from `extproc envoy-config`: the Kubernetes sidecar layout."""
    port = free_port()
    config = {"listen": {"port": port}, "admin": {"port": free_port()},
              "processor": {"port": free_port(), "token": "sidecar-shared-secret-0123456789"},
              "metrics": {"port": free_port()}, "providers": provider_config(fakes), "discovery": False,
              "auth": {"store": str(tmp_path / "accounts.json")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    rendered = subprocess.run([sys.executable, "-m", "extproc", "envoy-config", "--config", str(tmp_path / "c.yaml")],
                              capture_output=True, text=True, check=True).stdout
    (tmp_path / "envoy.yaml").write_text(rendered)
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "extproc", "serve", "--config", str(tmp_path / "c.yaml")],
                             stdout=log, stderr=subprocess.STDOUT)
    envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart",
                              "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_log_line(tmp_path / "serve.log", "processor listening on")
        wait_serving(f"http://127.0.0.1:{port}", [serve, envoy])  # Envoy reaches the processor, not just its port
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                              json={"model": "gpt-6-luna", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200 and response.headers["x-extproc-provider"] == "openai"
        assert fakes["openai"].wait_for(1)[0].headers["authorization"] == f"Bearer {SECRETS['openai']}"
    finally:
        stop_processes([envoy, serve])
        log.close()
    assert serve.returncode == 0


def test_a_second_gateway_on_a_busy_port_fails_naming_the_key(tmp_path: Path,
                                                               make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    first = make_stack({"discovery": False})
    config = {"listen": {"port": first.port}, "processor": {"port": free_port()}, "admin": {"port": free_port()},
              "discovery": False, "auth": {"store": str(tmp_path / "accounts.json")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    second = subprocess.run([sys.executable, "-m", "extproc", "up", "--config", str(tmp_path / "c.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"listen.port: 127.0.0.1:{first.port} is not available" in second.stderr + second.stdout
    assert httpx.get(first.url + "/v1/models").status_code == 200  # the first one is untouched


def test_envoys_own_failures_come_in_the_clients_envelope(make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """No provider listening, a body over the limit: the SDKs still get JSON in their own error shape."""
    dead = f"http://127.0.0.1:{free_port()}"
    stack = make_stack({"providers": {p: {"base_url": dead, "api_key": SECRETS[p]} for p in ("openai", "anthropic",
                                                                                                "gemini")},
                        "discovery": False, "max_request_bytes": 1_000_000})
    chat = {"model": "gpt-6-luna", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(stack.url + "/v1/chat/completions", json=chat)
    assert response.status_code == 502 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"]
    response = httpx.post(stack.url + "/v1/messages", json={**chat, "model": "claude-haiku-5-5", "max_tokens": 5})
    assert response.status_code == 502 and response.json()["type"] == "error"
    response = httpx.post(stack.url + "/v1beta/models/gemini-3.8-flash:generateContent", json={"contents": []})
    assert response.status_code == 502 and response.json()["error"]["code"] == 502
    big = {"model": "gpt-6-luna", "messages": [{"role": "user", "content": "x" * 1_500_000}]}
    response = httpx.post(stack.url + "/v1/chat/completions", json=big)
    assert response.status_code == 413 and "error" in response.json()
    # the processor's own answers are untouched: still one envelope, not wrapped twice
    response = httpx.post(stack.url + "/v1/chat/completions", json={**chat, "model": "no-such-model"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
