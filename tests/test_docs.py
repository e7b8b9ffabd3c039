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
