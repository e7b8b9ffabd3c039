"""YAML configuration → validated, immutable Settings. Every error names the key and the fix.

This is the only room that reads config files, the environment and package data; `core` gets plain types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from extproc.config.data import default_config_text
from extproc.config.flows import parse_flows
from extproc.config.models import parse_aliases, parse_fallbacks, parse_models
from extproc.config.providers import discovery_defaults, parse_providers
from extproc.config.values import (
    address,
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
    string,
    string_list,
)
from extproc.core.budget import PERIODS, Budget
from extproc.core.clients import ClientKey, ClientPolicy, digest
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


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read a config file (or the embedded default) and validate it."""
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
        # Only the position: PyYAML's own message quotes the line, which may hold a key.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys like listen, providers, models")
    return replace(parse_settings(raw, os.environ if env is None else env), source=None if path is None else str(path))


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    unset: list[tuple[str, str]] = []
    raw = expand_env(raw, env, "", unset)
    if unset:
        first_key, first_name = unset[0]
        more = "".join(f"; {k}: {n}" for k, n in unset[1:])
        raise ConfigError(f"{first_key}: environment variable {first_name} is not set{more}; set "
                          f"{'them' if len(unset) > 1 else 'it'}, or write ${{{first_name}:-}} to make it optional")
    reject_unknown(raw, "", {
        "listen", "processor", "admin", "providers", "models", "aliases", "fallbacks", "strategy",
        "health", "upstream_timeout", "max_request_bytes", "max_connections", "log_level", "envoy", "ca_file",
        "discovery", "oauth", "auth", "failover", "shutdown", "state", "clients", "accounting", "metrics", "log",
        "translation", "fast_path",
    })
    discovery = discovery_defaults(raw.get("discovery"))
    providers, credentials = parse_providers(raw.get("providers") or {}, discovery)
    if not boolean(raw.get("translation", True), "translation"):  # every request stays in its own API
        providers = {name: replace(p, translation=False) for name, p in providers.items()}
    models = parse_models(raw.get("models") or [], providers)
    known = {m.id for m in models} | {m.qualified for m in models}
    aliases = parse_aliases(raw.get("aliases") or {}, known)
    fallbacks = parse_fallbacks(raw.get("fallbacks") or {}, known | set(aliases))
    strategy = raw.get("strategy", "none")  # explicit fallbacks only: why in core/resolve.py
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    auth = mapping(raw.get("auth") or {}, "auth")
    reject_unknown(auth, "auth", {"store", "admin_token", "refresh_skew", "rotate_at"})
    rotate_at = positive_number(auth.get("rotate_at", 0.95), "auth.rotate_at")
    if rotate_at > 1:
        raise ConfigError(f"auth.rotate_at: a fraction of a window (e.g. 0.95), got {rotate_at:g}")
    admin_token = auth.get("admin_token") or None
    if admin_token is not None and len(string(admin_token, "auth.admin_token")) < 16:
        raise ConfigError("auth.admin_token: use at least 16 characters (e.g. `openssl rand -hex 24`)")
    envoy = mapping(raw.get("envoy") or {}, "envoy")
    reject_unknown(envoy, "envoy", {"log_level", "concurrency"})
    concurrency = envoy.get("concurrency")
    if concurrency is not None:
        concurrency = positive_int(concurrency, "envoy.concurrency")
    upstream_timeout = positive_number(raw.get("upstream_timeout", 600), "upstream_timeout")
    shutdown = mapping(raw.get("shutdown") or {}, "shutdown")
    reject_unknown(shutdown, "shutdown", {"grace"})
    redis_url, redis_prefix, redis_key = _state(raw.get("state"))
    own = {k: v for k, v in (raw.get("processor") or {}).items() if k not in ("token", "relay_port", "workers")}
    processor = address(own or None, "processor", Address("127.0.0.1", 50051))
    workers = processor_workers(raw.get("processor"), redis_url is not None)
    listen = address(raw.get("listen"), "listen", Address("127.0.0.1", 10000))
    log_section = mapping(raw.get("log") or {}, "log")
    reject_unknown(log_section, "log", {"format", "bodies"})
    return Settings(
        listen=listen,
        clients=_clients(raw.get("clients"), listen),
        processor=processor,
        relay=Address(processor.host, relay_port(raw.get("processor"), processor, workers)),
        workers=workers,
        processor_token=processor_token(raw.get("processor")),
        admin=address(raw.get("admin"), "admin", Address("127.0.0.1", 9901)),
        providers=providers,
        credentials=credentials,
        models=models,
        aliases=aliases,
        fallbacks=fallbacks,
        strategy=strategy,
        health=parse_health(raw.get("health") or {}),
        failover=parse_failover(raw.get("failover") or {}, upstream_timeout),
        shutdown_grace=non_negative_number(shutdown.get("grace", 30), "shutdown.grace"),
        state_redis_url=redis_url, state_prefix=redis_prefix, state_key=redis_key,
        upstream_timeout=upstream_timeout,
        max_request_bytes=positive_int(raw.get("max_request_bytes", 32 * 1024 * 1024), "max_request_bytes"),
        max_connections=positive_int(raw.get("max_connections", 10000), "max_connections"),
        log_level=choice(raw.get("log_level", "info"), "log_level", ("debug", "info", "warning", "error")),
        log_format=choice(log_section.get("format", "json"), "log.format", ("json", "text")),
        log_bodies=boolean(log_section.get("bodies", False), "log.bodies"),
        accounting=boolean(raw.get("accounting", True), "accounting"),
        fast_path=boolean(raw.get("fast_path", True), "fast_path"),
        metrics=None if raw.get("metrics") is False else address(raw.get("metrics"), "metrics",
                                                                   Address("127.0.0.1", 9464)),
        envoy_log_level=choice(envoy.get("log_level", "warning"), "envoy.log_level",
                                ("trace", "debug", "info", "warning", "error", "critical", "off")),
        envoy_concurrency=concurrency,
        ca_file=string(raw.get("ca_file", DEFAULT_CA_FILE), "ca_file"),
        flows=parse_flows(raw.get("oauth"), providers),
        auth_store=string(auth["store"], "auth.store") if auth.get("store") else None,
        admin_token=admin_token,
        refresh_skew=non_negative_number(auth.get("refresh_skew", 300), "auth.refresh_skew"),
        rotate_at=rotate_at,
    )



def parse_health(raw: Any) -> HealthPolicy:
    section = mapping(raw, "health")
    names = set(HealthPolicy.__dataclass_fields__)
    reject_unknown(section, "health", names)
    values = {k: non_negative_number(v, f"health.{k}") if k == "probe_interval" else positive_number(v, f"health.{k}")
              for k, v in section.items()}
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
    section = mapping(raw or {}, "state")
    reject_unknown(section, "state", {"redis"})
    if section.get("redis") is None:
        return None, "extproc:", None
    redis = mapping(section["redis"], "state.redis")
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


def _budget(raw: Any, key: str) -> Budget | None:
    if raw is None:
        return None
    section = mapping(raw, key)
    reject_unknown(section, key, {"usd", "per"})
    if "usd" not in section:
        raise ConfigError(f"{key}.usd: how many US dollars the key may spend per period, e.g. {{usd: 50, per: month}}")
    return Budget(positive_number(section["usd"], f"{key}.usd"), choice(section.get("per", "month"), f"{key}.per",
                                                                         PERIODS))


def _clients(raw: Any, listen: Address) -> ClientPolicy:
    """`clients`: the keys that may spend the owner's credentials. Required by default off loopback."""
    section = mapping(raw or {}, "clients")
    reject_unknown(section, "clients", {"keys", "require_key"})
    loopback = listen.host in ("127.0.0.1", "::1", "localhost") or listen.host.startswith("127.")
    require = boolean(section.get("require_key", not loopback), "clients.require_key")
    keys = []
    for i, entry in enumerate(section.get("keys") or []):
        key = f"clients.keys[{i}]"
        entry = mapping(entry, key)
        reject_unknown(entry, key, {"name", "key", "sha256", "models", "rpm", "budget"})
        name = string(entry.get("name"), f"{key}.name")
        if ("key" in entry) == ("sha256" in entry):
            raise ConfigError(f"{key}: give either key (e.g. ${{CLIENT_KEY}}) or sha256 (its hex SHA-256), not both "
                              "or neither")
        if "key" in entry:
            secret = string(entry["key"], f"{key}.key")
            if len(secret) < 16:
                raise ConfigError(f"{key}.key: use at least 16 characters (e.g. `openssl rand -hex 24`)")
            sha = digest(secret)
        else:
            hexed = string(entry["sha256"], f"{key}.sha256").lower()
            if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
                raise ConfigError(f"{key}.sha256: expected 64 hex digits (sha256sum of the key), not the key itself")
            sha = bytes.fromhex(hexed)
        rpm = positive_int(entry["rpm"], f"{key}.rpm") if entry.get("rpm") is not None else None
        keys.append(ClientKey(name, sha, tuple(string_list(entry.get("models") or [], f"{key}.models")), rpm,
                              _budget(entry.get("budget"), f"{key}.budget")))
    if require and not keys:
        raise ConfigError(f"clients.keys: listen.address {listen.host} is not loopback, so anyone who reaches it "
                          "would spend your credentials; add clients.keys (e.g. [{name: me, key: ${CLIENT_KEY}}]) "
                          "or set clients.require_key: false to opt out")
    if len({k.name for k in keys}) != len(keys):
        raise ConfigError("clients.keys: each key needs a name of its own (it is what logs show)")
    return ClientPolicy(tuple(keys), require)
