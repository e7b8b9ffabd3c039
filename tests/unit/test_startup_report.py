"""What `extproc up` says at start-up about providers without credentials: the fix for this config, a line for each
provider the config names, one line for the built-in ones it leaves without a key; and the URL it is ready at."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from extproc.config import load_settings
from extproc.core.settings import Address
from extproc.runner import ready_line, report_credentials


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_default_config_sums_up_the_providers_left_without_a_key_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="extproc"):
        report_credentials(load_settings(None, env={"GROQ_API_KEY": "gsk-x"}), ())
    assert warnings(caplog) == [
        "no credential for the built-in providers openai, anthropic, gemini, mistral, so their models are "
        "unavailable: set the variable of each you use (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, "
        "MISTRAL_API_KEY), or log in with `extproc auth login codex|claude|console|gemini`"]
    assert "provider groq: 1 credential(s)" in caplog.text
    assert "chatgpt" not in caplog.text  # an upstream for logins, not a provider to configure


def test_a_config_file_gets_a_line_for_each_provider_it_names_and_one_for_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("providers:\n  openai: {}\n  mistral: {api_key: '${MISTRAL_KEY:-}'}\n  groq: {api_key: gsk-x}\n")
    with caplog.at_level(logging.INFO, logger="extproc"):
        report_credentials(load_settings(path, env={"OPENAI_API_KEY": "ignored-by-this-config"}), ())
    assert warnings(caplog) == [
        f"provider openai has no credential, its models are unavailable: add providers.openai.api_key to {path}, "
        "or `extproc auth login codex`",
        f"provider mistral has no credential, its models are unavailable: add providers.mistral.api_key to {path}",
        "no credential for the built-in providers anthropic, gemini, so their models are unavailable: give one a "
        f"key under providers.<name>.api_key in {path}, or log in with `extproc auth login claude|console|gemini`"]


@pytest.mark.parametrize(("host", "url", "everywhere"), [
    ("127.0.0.1", "http://127.0.0.1:10000", False),
    ("0.0.0.0", "http://127.0.0.1:10000", True),
    ("::", "http://[::1]:10000", True),
    ("::1", "http://[::1]:10000", False),
])
def test_the_ready_line_gives_urls_a_client_here_can_use(host: str, url: str, everywhere: bool) -> None:
    line = ready_line(Address(host, 10000))
    assert line.startswith(f"extproc ready at {url}") and f"base URL {url}/v1;" in line
    assert ("listening on all addresses" in line) is everywhere
    assert "0.0.0.0:" not in line and "[::]" not in line
