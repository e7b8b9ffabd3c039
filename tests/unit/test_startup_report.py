"""What `extproc up` says at start-up about providers without credentials: the fix for this config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from extproc.config import load_settings
from extproc.runner import report_credentials


def test_the_default_config_asks_for_the_environment_variable(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="extproc"):
        report_credentials(load_settings(None, env={"GROQ_API_KEY": "gsk-x"}), ())
    text = caplog.text
    assert "provider openai has no credential" in text and "set OPENAI_API_KEY" in text
    assert "extproc auth login codex" in text and "provider groq: 1 credential(s)" in text
    assert "mistral" in text and "auth login" not in text.split("provider mistral")[1]  # no login exists for it
    assert "provider chatgpt" not in text  # an upstream for logins, not a provider to configure


def test_a_config_file_asks_for_its_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("providers: {}\n")
    with caplog.at_level(logging.INFO, logger="extproc"):
        report_credentials(load_settings(path, env={"OPENAI_API_KEY": "ignored-by-this-config"}), ())
    assert f"add providers.openai.api_key to {path}" in caplog.text
