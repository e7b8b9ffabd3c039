"""The README's config example is a config the gateway accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from extproc.config import parse_settings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_example_is_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configure", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    env = {"OPENAI_KEY_A": "sk-a", "OPENAI_KEY_B": "sk-b", "ANTHROPIC_API_KEY": "sk-c", "TEAM_KEY": "t" * 24}
    settings = parse_settings(yaml.safe_load(example.group(1)), env)
    assert {c.id for c in settings.credentials} >= {"openai:key1", "openai:key2", "anthropic:key1", "local:key1"}
    assert settings.aliases["fast"] == "groq/openai/gpt-oss-20b"
    assert [(k.name, k.rpm) for k in settings.clients.keys] == [("team", 600), ("ci", None)]


def test_providers_doc_azure_example_is_valid() -> None:
    text = (ROOT / "docs" / "providers.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text.split("## Azure OpenAI", 1)[1], re.S)
    assert example is not None
    env = {"AZURE_OPENAI_API_KEY": "k-a", "AZURE_OPENAI_EU_KEY": "k-b"}
    settings = parse_settings(yaml.safe_load(example.group(1)), env)
    assert settings.providers["azure"].served_name("gpt-6.1-terra") == "terra-prod"
    assert settings.providers["azure-eu"].api_version == "2024-10-21"


def test_providers_doc_vertex_example_is_valid() -> None:
    text = (ROOT / "docs" / "providers.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text.split("## Google Vertex AI", 1)[1], re.S)
    assert example is not None
    settings = parse_settings(yaml.safe_load(example.group(1)), {})
    assert settings.providers["vertex"].base_url == "https://us-central1-aiplatform.googleapis.com"
    assert settings.providers["vertex-global"].base_url == "https://aiplatform.googleapis.com"
    assert {m.id for m in settings.models if m.provider == "vertex-global"} == {"gemini-4-neon", "gemini-3.8-flash"}
