"""What a reloaded config changes, and the reloader's decisions on a real file (no Envoy, no network)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.config import load_settings, parse_settings
from extproc.config.changes import compare
from extproc.config.reload import ConfigReloader
from extproc.core.settings import Settings

LOCAL = {"base_url": "http://127.0.0.1:9", "apis": {"openai": "/v1"}, "api_key": "k-local-0"}
MODELS = [{"id": "local-model", "provider": "local", "context_window": 1000},
          {"id": "other-model", "provider": "local", "context_window": 1000}]


def _settings(**raw: Any) -> Settings:
    return parse_settings({"providers": {"local": LOCAL}, "models": MODELS, **raw}, {})


@pytest.mark.parametrize(("raw", "changed"), [
    ({"aliases": {"fast": "local-model"}}, ("aliases",)),
    ({"fallbacks": {"local-model": ["other-model"]}, "strategy": "same-provider"}, ("fallbacks", "strategy")),
    ({"failover": {"attempts": 2, "statuses": [429], "first_byte_timeout": 5}}, ("failover",)),
    ({"clients": {"keys": [{"name": "a", "key": "k" * 16, "rpm": 5}]}}, ("clients",)),
    ({"health": {"server_error_cooldown": 9}}, ("health",)),
    ({"providers": {"local": {**LOCAL, "api_key": "k-local-rotated"}}}, ("providers (API keys)",)),
    ({"providers": {"local": {**LOCAL, "headers": {"x-team": "a"}}}}, ("providers",)),
])
def test_what_the_processor_takes_applies_without_a_restart(raw: dict[str, Any], changed: tuple[str, ...]) -> None:
    change = compare(_settings(), _settings(**raw))
    assert change.changed == changed and change.needs_restart == () and change.applies


@pytest.mark.parametrize(("raw", "needs"), [
    ({"listen": {"port": 10001}}, "listen"),
    ({"processor": {"port": 50061}}, "processor"),
    ({"state": {"redis": {"url": "redis://127.0.0.1:1/0", "key": "q3YF0FJ4nUqUqgCAsQ2RZp6pr3sE1-9nOHqYmB9F8pI="}}},
     "state.redis.url"),
    ({"max_request_bytes": 1024}, "max_request_bytes"),
    ({"providers": {"local": {**LOCAL, "base_url": "http://127.0.0.1:10"}}}, "providers.local (Envoy routes to it)"),
    ({"providers": {"local": LOCAL, "more": {**LOCAL, "base_url": "http://127.0.0.1:11"}}}, "providers.more (added)"),
])
def test_what_envoy_or_a_started_process_holds_needs_a_restart(raw: dict[str, Any], needs: str) -> None:
    change = compare(_settings(), _settings(**raw))
    assert needs in change.needs_restart and not change.applies


def test_the_same_settings_change_nothing() -> None:
    assert not compare(_settings(), _settings()).changed


def _reloader(tmp_path: Path, raw: dict[str, Any]) -> tuple[ConfigReloader, list[Settings], Path]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"providers": {"local": LOCAL}, "models": MODELS, **raw}))
    applied: list[Settings] = []
    return ConfigReloader(load_settings(str(path)), applied.append), applied, path


def _rewrite(path: Path, **raw: Any) -> None:
    path.write_text(yaml.safe_dump({"providers": {"local": LOCAL}, "models": MODELS, **raw}))


def test_a_valid_change_is_applied_and_becomes_the_running_config(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    reloader, applied, path = _reloader(tmp_path, {})
    _rewrite(path, aliases={"fast": "local-model"})
    with caplog.at_level(logging.INFO, logger="extproc"):
        assert reloader.reload()
    assert [dict(s.aliases) for s in applied] == [{"fast": "local-model"}]
    assert reloader.running is applied[0]
    assert "config reloaded (the config file changed): aliases" in caplog.text
    assert not reloader.reload()  # read again: nothing changed
    assert len(applied) == 1


def test_an_invalid_file_is_not_applied_and_the_log_names_the_key(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    reloader, applied, path = _reloader(tmp_path, {})
    _rewrite(path, aliases={"fast": "no-such-model"})
    assert not reloader.reload()
    path.write_text("providers: [unclosed")
    assert not reloader.reload()
    assert not applied
    assert "aliases.fast: target 'no-such-model' is not a known model" in caplog.text
    assert caplog.text.count("the running config is kept") == 2
    caplog.clear()  # several errors: one log line that names each
    _rewrite(path, aliases={"fast": "no-such-model"}, strategy="nearest")
    assert not reloader.reload()
    [line] = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "aliases.fast" in line and "strategy" in line


def test_a_change_that_needs_a_restart_applies_nothing_of_the_file(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    reloader, applied, path = _reloader(tmp_path, {})
    _rewrite(path, aliases={"fast": "local-model"}, listen={"port": 10002})
    assert not reloader.reload()
    assert not applied and "listen only applies on a restart" in caplog.text


def test_prepare_makes_a_reloaded_file_this_process_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"providers": {"local": LOCAL}, "models": MODELS}))
    worker = load_settings(str(path)).worker(1)
    applied: list[Settings] = []
    reloader = ConfigReloader(worker, applied.append, lambda s: s.worker(1))
    _rewrite(path, aliases={"fast": "local-model"})
    assert reloader.reload()  # the worker's own ports are not a change
    assert applied[0].processor == worker.processor


def test_the_embedded_default_config_has_no_file_to_reload(caplog: pytest.LogCaptureFixture) -> None:
    reloader = ConfigReloader(parse_settings({}, {}), lambda s: None)
    assert not reloader.reload("SIGHUP") and "no file to read" in caplog.text
