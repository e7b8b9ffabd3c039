"""The container files stay consistent with the code: the config they mount is valid, the paths exist."""

from __future__ import annotations

import os
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


def test_compose_config_is_valid_and_listens_outside_the_container() -> None:
    settings = load_settings(ROOT / "deploy" / "compose-config.yaml", env={})
    assert settings.listen.host == "0.0.0.0" and settings.listen.port == 10000
    assert settings.auth_store == "/var/lib/extproc/accounts.json"


def test_compose_file_mounts_what_exists_and_publishes_the_listener() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["extproc"]
    sources = [v.split(":")[0] for v in service["volumes"] if v.startswith("./")]
    assert sources and all((ROOT / s).exists() for s in sources)
    assert "127.0.0.1:10000:10000" in service["ports"]
    assert (ROOT / "Dockerfile").exists()


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
    env = {"EXTPROC_PROCESSOR_TOKEN": "k8s-processor-token-0123456789", "PATH": os.environ["PATH"]}
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
