"""YAML configuration → validated, immutable Settings. Every error names the key and the fix.

This is the only room that reads config files, the environment and package data; `core` gets plain types.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from extproc.config.clients import parse_clients
from extproc.config.console import parse_console
from extproc.config.data import default_config_text
from extproc.config.flows import parse_flows
from extproc.config.models import parse_aliases, parse_fallbacks, parse_models
from extproc.config.problems import ConfigErrors, collecting, in_file_order, keep, report
from extproc.config.providers import discovery_defaults, parse_providers
from extproc.config.tracing import parse_tracing
from extproc.config.values import (
    ADMISSION_KEYS,
    address,
    admission,
    boolean,
    choice,
    expand_env,
    mapping,
    non_negative_number,
    positive_int,
    positive_number,
    processor_token,
    processor_workers,
    reject_unknown,
    relay_port,
    section,
    string,
)
from extproc.core.admission import AdmissionPolicy
from extproc.core.clients import ClientPolicy
from extproc.core.errors import ConfigError
from extproc.core.settings import (
    DEFAULT_CA_FILE,
    MAX_FAILOVER_ATTEMPTS,
    STRATEGIES,
    Address,
    FailoverPolicy,
    HealthPolicy,
    Settings,
)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None, *,
                  secrets: bool = True) -> Settings:
    """Read a config file (or the embedded default) and validate it; every error at once, in file order.
    `secrets=False` is for commands that serve nothing (`models`, `top`): an unset ${VAR} that only holds a
    client key, a provider key or a token is no error there, and the key stays unset."""
    if path is None:
        text, source = default_config_text(), "the embedded default config"
    else:
        try:
            text, source = Path(path).read_text(), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML{_yaml_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys like listen, providers, models")
    try:
        settings = parse_settings(raw, os.environ if env is None else env, secrets=secrets)
    except ConfigErrors as exc:
        raise ConfigErrors(in_file_order(exc.messages, text)) from None
    return replace(settings, source=None if path is None else str(path))


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """Where and why, never PyYAML's quote of the line (it may hold a key)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None)
    return f"{where}: {problem}" if problem else where


# The keys that hold secrets a command that serves nothing never uses (`load_settings(secrets=False)`).
_SECRET_KEYS = re.compile(r"clients\.keys\[\d+\]\.key|providers\.[^.]+\.(api_keys?(\[\d+\])?|client_secret)|"
                          r"processor\.token|auth\.admin_token|tracing\.headers\.[^.]+")
_TOP_KEYS = {
    "listen", "processor", "admin", "providers", "models", "aliases", "fallbacks", "strategy",
    "health", "upstream_timeout", "max_request_bytes", "max_connections", "log_level", "envoy", "ca_file",
    "discovery", "oauth", "auth", "failover", "shutdown", "state", "clients", "accounting", "metrics", "log",
    "translation", "fast_path", "fast_routes", "console", "tracing",
}


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str], *, secrets: bool = True) -> Settings:
    """Validated settings, or one ConfigErrors with every error found (a part with an error is replaced by a
    stand-in, so what comes after it is still checked)."""
    with collecting() as found:
        settings = _parse(raw, env, secrets)
    if found:
        raise ConfigErrors(found)
    return settings


def _parse(raw: Mapping[str, Any], env: Mapping[str, str], secrets: bool) -> Settings:
    unset: list[tuple[str, str]] = []
    raw = expand_env(raw, env, "", unset)
    for key, name in unset:
        if secrets or not _SECRET_KEYS.fullmatch(key):
            report(ConfigError(f"{key}: environment variable {name} is not set; set it, or write ${{{name}:-}} "
                               "to make it optional"))
    reject_unknown(raw, "", _TOP_KEYS)
    discovery = keep(discovery_defaults(None), discovery_defaults, raw.get("discovery"))
    providers, credentials = parse_providers(raw.get("providers") or {}, discovery)
    named = {str(name) for name in raw["providers"]} if isinstance(raw.get("providers"), dict) else set()
    if not keep(True, boolean, raw.get("translation", True), "translation"):  # every request stays in its own API
        providers = {name: replace(p, translation=False) for name, p in providers.items()}
    models = parse_models(raw.get("models") or [], providers.keys(), named - providers.keys(),
                          {name: {m: p.deployment_endpoints.get(m, ()) for m in p.deployments}
                           for name, p in providers.items() if p.deployments})
    known = {m.id for m in models} | {m.qualified for m in models} | _user_model_ids(raw.get("models"))
    aliases = parse_aliases(raw.get("aliases") or {}, known)
    fallbacks = parse_fallbacks(raw.get("fallbacks") or {}, known | set(aliases))
    strategy = raw.get("strategy", "none")  # explicit fallbacks only: why in core/resolve.py
    if strategy not in STRATEGIES:
        report(ConfigError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}"))
    auth = section(raw.get("auth"), "auth", {"store", "admin_token", "refresh_skew", "rotate_at"})
    rotate_at = keep(0.95, positive_number, auth.get("rotate_at", 0.95), "auth.rotate_at")
    if rotate_at > 1:
        report(ConfigError(f"auth.rotate_at: a fraction of a window (e.g. 0.95), got {rotate_at:g}"))
    admin_token = auth.get("admin_token") or None
    if admin_token is not None and len(keep("", string, admin_token, "auth.admin_token")) < 16:
        report(ConfigError("auth.admin_token: use at least 16 characters (e.g. `openssl rand -hex 24`)"))
    envoy = section(raw.get("envoy"), "envoy", {"log_level", "concurrency"})
    concurrency = envoy.get("concurrency")
    if concurrency is not None:
        concurrency = keep(None, positive_int, concurrency, "envoy.concurrency")
    upstream_timeout = keep(600.0, positive_number, raw.get("upstream_timeout", 600), "upstream_timeout")
    shutdown = section(raw.get("shutdown"), "shutdown", {"grace"})
    redis_url, redis_prefix, redis_key = keep((None, "extproc:", None), _state, raw.get("state"))
    processor_raw = raw.get("processor")
    own = {k: v for k, v in processor_raw.items() if k not in ("token", "relay_port", "workers", *ADMISSION_KEYS)} \
        if isinstance(processor_raw, dict) else processor_raw
    processor = keep(Address("127.0.0.1", 50051), address, own or None, "processor", Address("127.0.0.1", 50051))
    workers = keep(1, processor_workers, processor_raw, redis_url is not None)
    listen = keep(Address("127.0.0.1", 10000), address, raw.get("listen"), "listen", Address("127.0.0.1", 10000))
    log_section = section(raw.get("log"), "log", {"format", "bodies"})
    metrics_default = Address("127.0.0.1", 9464)
    return Settings(
        listen=listen,
        clients=keep(ClientPolicy(), parse_clients, raw.get("clients"), listen, secrets),
        processor=processor,
        relay=Address(processor.host, keep(processor.port + 1, relay_port, processor_raw, processor, workers)),
        workers=workers,
        admission=keep(AdmissionPolicy(), admission, processor_raw),
        processor_token=keep(None, processor_token, processor_raw),
        admin=keep(Address("127.0.0.1", 9901), address, raw.get("admin"), "admin", Address("127.0.0.1", 9901)),
        providers=providers,
        credentials=credentials,
        models=models,
        aliases=aliases,
        fallbacks=fallbacks,
        strategy=strategy,
        health=keep(HealthPolicy(), parse_health, raw.get("health") or {}),
        failover=keep(FailoverPolicy(), parse_failover, raw.get("failover") or {}, upstream_timeout),
        shutdown_grace=keep(30.0, non_negative_number, shutdown.get("grace", 30), "shutdown.grace"),
        state_redis_url=redis_url, state_prefix=redis_prefix, state_key=redis_key,
        upstream_timeout=upstream_timeout,
        max_request_bytes=keep(0, positive_int, raw.get("max_request_bytes", 32 * 1024 * 1024), "max_request_bytes"),
        max_connections=keep(0, positive_int, raw.get("max_connections", 10000), "max_connections"),
        log_level=keep("info", choice, raw.get("log_level", "info"), "log_level",
                       ("debug", "info", "warning", "error")),
        log_format=keep("json", choice, log_section.get("format", "json"), "log.format", ("json", "text")),
        log_bodies=keep(False, boolean, log_section.get("bodies", False), "log.bodies"),
        accounting=keep(True, boolean, raw.get("accounting", True), "accounting"),
        fast_path=keep(True, boolean, raw.get("fast_path", True), "fast_path"),
        tracing=keep(None, parse_tracing, raw.get("tracing")),
        fast_routes=None if raw.get("fast_routes") is None else keep(None, string, raw["fast_routes"], "fast_routes"),
        metrics=None if raw.get("metrics") is False else keep(metrics_default, address, raw.get("metrics"), "metrics",
                                                               metrics_default),
        envoy_log_level=keep("warning", choice, envoy.get("log_level", "warning"), "envoy.log_level",
                             ("trace", "debug", "info", "warning", "error", "critical", "off")),
        envoy_concurrency=concurrency,
        ca_file=keep(DEFAULT_CA_FILE, string, raw.get("ca_file", DEFAULT_CA_FILE), "ca_file"),
        flows=parse_flows(raw.get("oauth"), providers.keys() | named),
        auth_store=keep(None, string, auth["store"], "auth.store") if auth.get("store") else None,
        admin_token=admin_token,
        refresh_skew=keep(300.0, non_negative_number, auth.get("refresh_skew", 300), "auth.refresh_skew"),
        rotate_at=rotate_at,
        usage_store=keep("auto", parse_console, raw.get("console"), redis_url is not None or _names_redis(raw)),
        named_providers=frozenset(named),
    )


def _names_redis(raw: Mapping[str, Any]) -> bool:
    """state.redis is given (with an error of its own, already reported: not a second one for the console)."""
    state = raw.get("state")
    return isinstance(state, dict) and bool(state.get("redis"))


def _user_model_ids(raw: Any) -> set[str]:
    """The ids (and provider/id) the models section names, also of entries with errors: an alias or fallback
    naming one is not a second error."""
    entries = [e for e in raw if isinstance(e, dict) and isinstance(e.get("id"), str)] if isinstance(raw, list) else []
    return {e["id"] for e in entries} | {f"{e['provider']}/{e['id']}" for e in entries
                                         if isinstance(e.get("provider"), str)}


def parse_health(raw: Any) -> HealthPolicy:
    section = mapping(raw, "health")
    names = set(HealthPolicy.__dataclass_fields__)
    reject_unknown(section, "health", names)
    values = {k: non_negative_number(v, f"health.{k}") if k == "probe_interval" else positive_number(v, f"health.{k}")
              for k, v in section.items() if k in names}
    return replace(HealthPolicy(), **values)


def parse_failover(raw: Any, upstream_timeout: float) -> FailoverPolicy:
    section = mapping(raw, "failover")
    reject_unknown(section, "failover", set(FailoverPolicy.__dataclass_fields__))
    default = FailoverPolicy()
    attempts = positive_int(section.get("attempts", default.attempts), "failover.attempts")
    if attempts > MAX_FAILOVER_ATTEMPTS:
        raise ConfigError(f"failover.attempts: at most {MAX_FAILOVER_ATTEMPTS} (each attempt costs the client time), "
                          f"got {attempts}")
    statuses = section.get("statuses", list(default.statuses))
    if not isinstance(statuses, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses):
        raise ConfigError("failover.statuses: expected a list of HTTP status codes, e.g. [429, 500, 502, 503]")
    for i, status in enumerate(statuses):
        if not 400 <= status <= 599:
            raise ConfigError(f"failover.statuses[{i}]: {status} is not an error status (400-599)")
    timeout = positive_number(section.get("first_byte_timeout", min(default.first_byte_timeout, upstream_timeout)),
                              "failover.first_byte_timeout")
    if timeout > upstream_timeout:
        raise ConfigError(f"failover.first_byte_timeout: {timeout:g}s is longer than upstream_timeout "
                          f"({upstream_timeout:g}s), which would end the request first; lower it")
    return FailoverPolicy(attempts, tuple(dict.fromkeys(statuses)), timeout)



__all__ = ["default_config_text", "load_settings", "parse_settings"]


def _state(raw: Any) -> tuple[str | None, str, str | None]:
    """`state.redis`: where replicas and workers share health and logins (unset: each process keeps its own
    health, and logins stay in the file store)."""
    state = section(raw, "state", {"redis"})
    if state.get("redis") is None:
        return None, "extproc:", None
    redis = mapping(state["redis"], "state.redis")
    reject_unknown(redis, "state.redis", {"url", "prefix", "key"})
    url = string(redis.get("url"), "state.redis.url")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("state.redis.url: expected redis://host:port[/db], rediss://… or unix://…, e.g. "
                          "redis://127.0.0.1:6379/0 (or ${REDIS_URL})")
    key = redis.get("key")
    if not key:
        raise ConfigError("state.redis.key: logins in Redis are encrypted with it; set it from the environment "
                          "(key: ${EXTPROC_STATE_KEY}), and make one with python -c \"from cryptography.fernet import "
                          "Fernet; print(Fernet.generate_key().decode())\"")
    try:
        Fernet(string(key, "state.redis.key").encode())
    except ValueError:
        raise ConfigError("state.redis.key: not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                          "Fernet.generate_key()") from None
    return url, string(redis.get("prefix", "extproc:"), "state.redis.prefix"), str(key)
