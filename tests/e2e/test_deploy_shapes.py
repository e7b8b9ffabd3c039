"""The fast path in every deploy shape: an Envoy rendered ahead (the compose and Kubernetes layouts, without
Docker) reads the routes its processor writes, and replicas sharing Redis publish the models asked for on any of
them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.ports import free_port_block
from extproc.runner import envoy_binary
from tests.conftest import STATE_KEY, RedisServer, Stack, stop_processes, wait_envoy_live, wait_serving
from tests.e2e.test_fast_path import routed, until_fast
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
KEY = "k-deploy-shapes"


def _config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    return {"discovery": False, "strategy": "none",
            "providers": {"fa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": KEY}},
            "models": [{"id": "fa-model", "provider": "fa", "context_window": 100000,
                        "capabilities": ["tools", "vision", "reasoning", "structured_output", "streaming"]}]}


def _chat(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "fa-model", "messages": CHAT})


def fast_routes_loaded(admin_url: str) -> set[str]:
    """The names of the fast routes this Envoy holds now (read from its admin: the routes file it reloaded)."""
    dump = httpx.get(admin_url + "/config_dump", params={"resource": "dynamic_route_configs"}).json()
    return {r["name"] for c in dump.get("configs", []) for vh in c["route_config"].get("virtual_hosts", [])
            for r in vh.get("routes", []) if r.get("name", "").startswith("fast ")}


def test_an_envoy_rendered_ahead_serves_fast_from_the_routes_its_processor_writes(
        tmp_path: Path, fakes: dict[str, FakeProvider]) -> None:
    """The sidecar layout: the routes file written first (an init step), Envoy started from the rendered config
    before its processor, then `extproc serve` with the same directory."""
    base = free_port_block(5)
    routes = tmp_path / "routes"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        **_config(fakes), "listen": {"port": base}, "admin": {"port": base + 1}, "metrics": {"port": base + 2},
        "processor": {"port": base + 3, "relay_port": base + 4, "token": "rendered-ahead-secret-0123456789"},
        "auth": {"store": str(tmp_path / "accounts.json")}}))
    extproc = [sys.executable, "-m", "extproc"]
    subprocess.run([*extproc, "init-routes", "--config", str(config), "--routes-dir", str(routes)], check=True)
    assert (routes / "routes.json").stat().st_mode & 0o777 == 0o600  # it holds API keys once models are hot
    rendered = subprocess.run([*extproc, "envoy-config", "--config", str(config), "--routes-dir", str(routes)],
                              capture_output=True, text=True, check=True).stdout
    (tmp_path / "envoy.yaml").write_text(rendered)
    check = subprocess.run([envoy_binary(), "--mode", "validate", "--disable-hot-restart", "-c",
                            str(tmp_path / "envoy.yaml")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart",
                              "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = (tmp_path / "serve.log").open("wb")
    procs = [envoy]
    try:
        wait_envoy_live(base + 1, envoy)  # up on the initial file, before any processor
        procs.append(subprocess.Popen([*extproc, "serve", "--config", str(config), "--routes-dir", str(routes)],
                                      stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{base}"
        wait_serving(url, procs)
        first = _chat(url)
        assert first.status_code == 200 and first.headers["x-extproc-route"] == "direct"
        fast = until_fast(lambda: _chat(url))
        assert fast.status_code == 200 and fast.headers["x-extproc-route"] == "direct; fast"
        assert fakes["openai"].requests[-1].headers["authorization"] == f"Bearer {KEY}"
    finally:
        stop_processes(procs[::-1])
        log.close()
    assert procs[-1].returncode == 0


def test_a_model_asked_for_on_one_replica_is_served_fast_by_the_other(
        fakes: dict[str, FakeProvider], redis_server: RedisServer,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Two replicas sharing one redis-server, the first with two workers: a model asked for on the first is in
    the second's routes before the second's full path has seen it."""
    config = {**_config(fakes),
              "state": {"redis": {"url": redis_server.url, "prefix": f"hot{time.monotonic_ns()}:", "key": STATE_KEY}}}
    first = make_stack({**config, "processor": {"workers": 2}})
    second = make_stack({**config, "processor": {"workers": 1}})
    assert _chat(first.url).headers["x-extproc-route"] == "direct"  # on either worker of the first
    eventually(lambda: "fast chat fa-model" in fast_routes_loaded(second.admin_url),
               "the second replica's Envoy holds the model's fast route")
    answer = _chat(second.url)
    assert answer.status_code == 200 and answer.headers["x-extproc-route"] == "direct; fast"
    assert routed(second) == 0  # the second replica's processor never routed a request
    assert fakes["openai"].requests[-1].headers["authorization"] == f"Bearer {KEY}"
    # The first replica publishes it too, whichever of its workers noted it (only worker 0 writes the file).
    eventually(lambda: "fast chat fa-model" in fast_routes_loaded(first.admin_url),
               "the first replica's Envoy holds the model's fast route")
