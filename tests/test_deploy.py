"""The container files stay consistent with the code: the config they mount is valid, the paths exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from extproc.core.config import load_settings

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
