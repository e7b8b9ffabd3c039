"""YAML configuration → validated, immutable Settings. Every error names the key and the fix."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from extproc.core.catalog import CAPABILITIES, MODES, STATUSES, ModelSpec, builtin_catalog_data
from extproc.core.errors import ConfigError
from extproc.providers import (
    Api,
    ApiRoute,
    AuthStyle,
    DiscoverySpec,
    ProviderSpec,
    builtin_provider_data,
    parse_base_url,
)
from extproc.providers.oauth import Flow, parse_flows

DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
# The client endpoints of each API family, by the names config uses (see extproc.formats).
ENDPOINTS = {
    Api.OPENAI: frozenset({"chat", "completions", "responses", "embeddings"}),
    Api.ANTHROPIC: frozenset({"messages"}),
    Api.GEMINI: frozenset({"gemini"}),
}
STRATEGIES = ("capability-match", "same-provider", "cost-optimized", "none")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credential:
    """One way to serve a provider's models: an API key, or a login whose token is fetched per request.

    The secret never appears in a repr or a log; ids do (`openai:key1`, `claude-3f9a1c`).
    """

    id: str
    provider: str  # whose models it serves
    secret: str = field(repr=False, default="")  # an API key; empty for logins
    upstream: str = ""  # the provider entry requests go to, when not `provider` (e.g. chatgpt for Codex)
    account: str | None = None  # a login's account id: its token comes from the account manager
    auth: AuthStyle | None = None  # overrides the upstream's auth style
    headers: Mapping[str, str] = field(default_factory=dict)  # set when the client did not send them
    merge_headers: Mapping[str, str] = field(default_factory=dict)  # comma-joined with the client's values
    system_prefix: str | None = None  # text the provider requires first in an Anthropic system prompt
    project: str | None = None  # Code Assist project of a Gemini login

    @property
    def route(self) -> str:
        return self.upstream or self.provider


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How long upstream failures keep a credential out of rotation, in seconds."""

    backoff_base: float = 1.0
    backoff_max: float = 300.0
    server_error_cooldown: float = 5.0
    auth_suspension: float = 1800.0
    not_found_suspension: float = 3600.0


@dataclass(frozen=True, slots=True)
class Settings:
    listen: Address
    processor: Address
    admin: Address
    providers: Mapping[str, ProviderSpec]
    credentials: tuple[Credential, ...]
    models: tuple[ModelSpec, ...]
    aliases: Mapping[str, str]
    fallbacks: Mapping[str, tuple[str, ...]]
    strategy: str
    health: HealthPolicy
    upstream_timeout: float = 600.0
    max_request_bytes: int = 32 * 1024 * 1024
    max_connections: int = 10000
    log_level: str = "info"
    envoy_log_level: str = "warning"
    envoy_concurrency: int | None = None
    ca_file: str = DEFAULT_CA_FILE
    flows: Mapping[str, Flow] = field(default_factory=dict)  # OAuth logins
    auth_store: str | None = None  # the accounts file; None: the user's config directory
    admin_token: str | None = field(default=None, repr=False)  # guards the /auth API
    refresh_skew: float = 300.0  # refresh a login's token this long before it expires
    processor_token: str | None = field(default=None, repr=False)  # Envoy presents it on every ext_proc stream
    source: str | None = None  # the config file; None: the embedded default config


DEFAULT_CONFIG_NAME = "default_config.yaml"


def default_config_text() -> str:
    return resources.files("extproc.data").joinpath(DEFAULT_CONFIG_NAME).read_text()


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
    raw = _expand_env(raw, env, "", unset)
    if unset:
        first_key, first_name = unset[0]
        more = "".join(f"; {k}: {n}" for k, n in unset[1:])
        raise ConfigError(f"{first_key}: environment variable {first_name} is not set{more}; set "
                          f"{'them' if len(unset) > 1 else 'it'}, or write ${{{first_name}:-}} to make it optional")
    _reject_unknown(raw, "", {
        "listen", "processor", "admin", "providers", "models", "aliases", "fallbacks", "strategy",
        "health", "upstream_timeout", "max_request_bytes", "max_connections", "log_level", "envoy", "ca_file",
        "discovery", "oauth", "auth",
    })
    discovery_defaults = _discovery_defaults(raw.get("discovery"))
    providers, credentials = _parse_providers(raw.get("providers") or {}, discovery_defaults)
    models = _parse_models(raw.get("models") or [], providers)
    known = {m.id for m in models} | {m.qualified for m in models}
    aliases = _parse_aliases(raw.get("aliases") or {}, known)
    fallbacks = _parse_fallbacks(raw.get("fallbacks") or {}, known | set(aliases))
    strategy = raw.get("strategy", "capability-match")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    auth = _mapping(raw.get("auth") or {}, "auth")
    _reject_unknown(auth, "auth", {"store", "admin_token", "refresh_skew"})
    admin_token = auth.get("admin_token") or None
    if admin_token is not None and len(_string(admin_token, "auth.admin_token")) < 16:
        raise ConfigError("auth.admin_token: use at least 16 characters (e.g. `openssl rand -hex 24`)")
    envoy = _mapping(raw.get("envoy") or {}, "envoy")
    _reject_unknown(envoy, "envoy", {"log_level", "concurrency"})
    concurrency = envoy.get("concurrency")
    if concurrency is not None:
        concurrency = _positive_int(concurrency, "envoy.concurrency")
    return Settings(
        listen=_address(raw.get("listen"), "listen", Address("127.0.0.1", 10000)),
        processor=_address({k: v for k, v in (raw.get("processor") or {}).items() if k != "token"} or None,
                           "processor", Address("127.0.0.1", 50051)),
        processor_token=_processor_token(raw.get("processor")),
        admin=_address(raw.get("admin"), "admin", Address("127.0.0.1", 9901)),
        providers=providers,
        credentials=credentials,
        models=models,
        aliases=aliases,
        fallbacks=fallbacks,
        strategy=strategy,
        health=_parse_health(raw.get("health") or {}),
        upstream_timeout=_positive_number(raw.get("upstream_timeout", 600), "upstream_timeout"),
        max_request_bytes=_positive_int(raw.get("max_request_bytes", 32 * 1024 * 1024), "max_request_bytes"),
        max_connections=_positive_int(raw.get("max_connections", 10000), "max_connections"),
        log_level=_choice(raw.get("log_level", "info"), "log_level", ("debug", "info", "warning", "error")),
        envoy_log_level=_choice(envoy.get("log_level", "warning"), "envoy.log_level",
                                ("trace", "debug", "info", "warning", "error", "critical", "off")),
        envoy_concurrency=concurrency,
        ca_file=_string(raw.get("ca_file", DEFAULT_CA_FILE), "ca_file"),
        flows=parse_flows(raw.get("oauth"), providers),
        auth_store=_string(auth["store"], "auth.store") if auth.get("store") else None,
        admin_token=admin_token,
        refresh_skew=_non_negative_number(auth.get("refresh_skew", 300), "auth.refresh_skew"),
    )


def _expand_env(value: Any, env: Mapping[str, str], key: str, unset: list[tuple[str, str]]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; each unset ${VAR} is noted in `unset` (key, name)."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name, has_default, default = match.group(1), match.group(2), match.group(3)
            if env.get(name):
                return env[name]
            if has_default is not None:  # like the shell's ${VAR:-default}: unset or empty
                return default or ""
            if name not in env:
                unset.append((key, name))
            return ""
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, env, f"{key}.{k}" if key else str(k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, f"{key}[{i}]", unset) for i, v in enumerate(value)]
    return value


def _reject_unknown(section: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    for name in section:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"{where}: unknown key{_did_you_mean(str(name), allowed)}; "
                              f"expected one of {', '.join(sorted(allowed))}")


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string")
    return value


def _string_list(value: Any, key: str, allowed: frozenset[str] | None = None) -> list[str]:
    """A list of strings, each one of `allowed` when given."""
    hint = f" drawn from {', '.join(sorted(allowed))}" if allowed is not None else ""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings{hint}")
    if allowed is not None:
        for i, item in enumerate(value):
            if item not in allowed:
                raise ConfigError(f"{key}[{i}]: {item!r} is not one of {', '.join(sorted(allowed))}")
    return value


def _number(value: Any, key: str, *, whole: bool = False, zero_ok: bool = False) -> float:
    """A number > 0 (≥ 0 with zero_ok), a whole one with `whole`; the error says which was expected."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0 or (value == 0 and not zero_ok):
        what = "whole number" if whole else "number"
        raise ConfigError(f"{key}: expected a {what} {'≥ 0' if zero_ok else '> 0'}, got {value!r}")
    return value


def _positive_int(value: Any, key: str) -> int:
    return int(_number(value, key, whole=True))


def _non_negative_int(value: Any, key: str) -> int:
    return int(_number(value, key, whole=True, zero_ok=True))


def _positive_number(value: Any, key: str) -> float:
    return float(_number(value, key))


def _non_negative_number(value: Any, key: str) -> float:
    return float(_number(value, key, zero_ok=True))


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _processor_token(value: Any) -> str | None:
    """The shared secret between Envoy and the processor: whoever can open a stream gets credentials."""
    if not isinstance(value, dict) or not value.get("token"):
        return None
    token = _string(value["token"], "processor.token")
    if len(token) < 16 or not all(33 <= ord(c) <= 126 for c in token):
        raise ConfigError("processor.token: use 16+ visible ASCII characters (e.g. `openssl rand -hex 24`)")
    return token


def _address(value: Any, key: str, default: Address) -> Address:
    if value is None:
        return default
    section = _mapping(value, key)
    _reject_unknown(section, key, {"address", "port"})
    host = _string(section.get("address", default.host), f"{key}.address")
    port = section.get("port", default.port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{key}.port: expected a port number 0-65535, got {port!r}")
    return Address(host, port)


_PROVIDER_KEYS = {"base_url", "auth", "api_key", "api_keys", "api_key_env", "headers", "apis", "discovery",
                  "transform", "prefer", "model_prefixes"}
_DISCOVERY_STYLES = ("openai", "anthropic", "gemini")


def _discovery_defaults(raw: Any) -> DiscoverySpec:
    """The top-level `discovery` section: defaults every provider's discovery inherits."""
    if raw is False:
        return DiscoverySpec("", "openai", Api.OPENAI, enabled=False)
    section = _mapping(raw or {}, "discovery")
    _reject_unknown(section, "discovery", {"enabled", "ttl", "timeout"})
    return DiscoverySpec("", "openai", Api.OPENAI, enabled=_bool(section.get("enabled", True), "discovery.enabled"),
                         ttl=_positive_number(section.get("ttl", 300), "discovery.ttl"),
                         timeout=_positive_number(section.get("timeout", 10), "discovery.timeout"))


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _discovery(raw: Any, key: str, defaults: DiscoverySpec, apis: Mapping[Api, ApiRoute]) -> DiscoverySpec | None:
    if raw is None:
        return None
    if raw is False:
        return replace(defaults, enabled=False)
    section = _mapping(raw, key)
    _reject_unknown(section, key, {"path", "style", "api", "enabled", "ttl", "timeout"})
    path = _string(section.get("path"), f"{key}.path")
    if not path.startswith("/"):
        raise ConfigError(f"{key}.path: a path below base_url starts with '/', got {path!r}")
    style = _choice(section.get("style", "openai"), f"{key}.style", _DISCOVERY_STYLES)
    api = Api(_choice(section.get("api", "openai"), f"{key}.api", tuple(a.value for a in Api)))
    if api not in apis:
        raise ConfigError(f"{key}.api: the provider has no apis.{api.value} entry to take the auth style from")
    return DiscoverySpec(
        path=path, style=style, api=api,
        enabled=defaults.enabled and _bool(section.get("enabled", True), f"{key}.enabled"),
        ttl=_positive_number(section.get("ttl", defaults.ttl), f"{key}.ttl"),
        timeout=_positive_number(section.get("timeout", defaults.timeout), f"{key}.timeout"),
    )


def _parse_providers(raw: Any, discovery: DiscoverySpec) -> tuple[dict[str, ProviderSpec], tuple[Credential, ...]]:
    user = _mapping(raw, "providers")
    merged: dict[str, dict[str, Any]] = {name: dict(data) for name, data in builtin_provider_data().items()}
    for name, section in user.items():
        key = f"providers.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ConfigError(f"{key}: provider names are lower-case letters, digits, '-' and '_'")
        section = _mapping(section or {}, key)
        _reject_unknown(section, key, _PROVIDER_KEYS)
        if name not in merged and ("base_url" not in section or "apis" not in section):
            raise ConfigError(f"{key}: not a built-in provider{_did_you_mean(name, merged)}; a provider of your own "
                              f"needs base_url and apis (e.g. apis: {{openai: /v1}})")
        target = merged.setdefault(name, {})
        if isinstance(section.get("discovery"), dict) and isinstance(target.get("discovery"), dict):
            section = {**section, "discovery": {**target["discovery"], **section["discovery"]}}
        target.update(section)
    providers: dict[str, ProviderSpec] = {}
    credentials: list[Credential] = []
    for name, data in merged.items():
        key = f"providers.{name}"
        providers[name] = _provider(name, data, key, discovery)
        credentials.extend(_credentials(name, data, key))
    return providers, tuple(credentials)


def _provider(name: str, data: Mapping[str, Any], key: str, discovery: DiscoverySpec) -> ProviderSpec:
    base_url = _string(data.get("base_url"), f"{key}.base_url")
    try:
        parse_base_url(base_url)
    except ValueError as exc:
        raise ConfigError(f"{key}.base_url: {exc}; write e.g. https://api.example.com") from exc
    auth = _choice(data.get("auth", "bearer"), f"{key}.auth", tuple(s.value for s in AuthStyle))
    headers = {str(k).lower(): str(v) for k, v in _mapping(data.get("headers") or {}, f"{key}.headers").items()}
    apis: dict[Api, ApiRoute] = {}
    for api_name, route in _mapping(data.get("apis") or {}, f"{key}.apis").items():
        api_key = f"{key}.apis.{api_name}"
        api = Api(_choice(api_name, api_key, tuple(a.value for a in Api)))
        endpoints: frozenset[str] | None = None
        if isinstance(route, str) or route is None:
            path, route_auth = route or "", auth
        else:
            route = _mapping(route, api_key)
            _reject_unknown(route, api_key, {"path", "auth", "endpoints"})
            path = route.get("path") or ""
            route_auth = _choice(route.get("auth", auth), f"{api_key}.auth", tuple(s.value for s in AuthStyle))
            if "endpoints" in route:
                endpoints = frozenset(_string_list(route["endpoints"], f"{api_key}.endpoints", ENDPOINTS[api]))
        if path and not path.startswith("/"):
            raise ConfigError(f"{api_key}: a path prefix starts with '/', got {path!r}")
        base_path = parse_base_url(base_url).base_path
        if path and base_path.endswith(path.rstrip("/")):
            raise ConfigError(f"{key}.base_url: it ends with {path.rstrip('/')}, which apis.{api_name} adds again "
                              f"({base_path}{path}/…); drop {path.rstrip('/')} from base_url")
        apis[api] = ApiRoute(path.rstrip("/"), AuthStyle(route_auth), endpoints)
    if not apis:
        raise ConfigError(f"{key}.apis: name at least one client API this provider speaks (openai, anthropic, gemini)")
    env_name = data.get("api_key_env")
    return ProviderSpec(name=name, base_url=base_url, auth=AuthStyle(auth), apis=apis, headers=headers,
                        api_key_env=str(env_name) if env_name else None,
                        discovery=_discovery(data.get("discovery"), f"{key}.discovery", discovery, apis),
                        transform=_choice(data["transform"], f"{key}.transform", ("codeassist",))
                        if data.get("transform") else None,
                        prefer=_choice(data.get("prefer", "api_key"), f"{key}.prefer", ("api_key", "login")),
                        model_prefixes=tuple(_string_list(data.get("model_prefixes") or [], f"{key}.model_prefixes")))


def _credentials(provider: str, data: Mapping[str, Any], key: str) -> list[Credential]:
    keys: list[str] = []
    if data.get("api_key") not in (None, ""):
        keys.append(_string(data["api_key"], f"{key}.api_key"))
    raw_list = data.get("api_keys") or []
    if not isinstance(raw_list, list):
        raise ConfigError(f"{key}.api_keys: expected a list of keys")
    keys.extend(_string(k, f"{key}.api_keys[{i}]") for i, k in enumerate(raw_list) if k != "")
    for i, k in enumerate(keys):
        if not all(33 <= ord(c) <= 126 for c in k):
            raise ConfigError(f"{key}: key {i + 1} has spaces, line breaks or non-ASCII characters "
                              "(a pasted key often carries a newline); no provider issues such keys")
    return [Credential(id=f"{provider}:key{i + 1}", provider=provider, secret=k) for i, k in enumerate(keys)]


_MODEL_KEYS = set(ModelSpec.__dataclass_fields__) - {"discovered"}


def _parse_models(raw: Any, providers: Mapping[str, ProviderSpec]) -> tuple[ModelSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError("models: expected a list of model entries (each with at least id and provider)")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in builtin_catalog_data():
        merged[(entry["provider"], entry["id"])] = dict(entry)
    for i, entry in enumerate(raw):
        key = f"models[{i}]"
        entry = _mapping(entry, key)
        _reject_unknown(entry, key, _MODEL_KEYS)
        model_id = _string(entry.get("id"), f"{key}.id")
        provider = entry.get("provider")
        if provider is None:
            owners = [p for (p, m) in merged if m == model_id]
            if len(owners) != 1:
                raise ConfigError(f"{key}.provider: required for {model_id!r} (it is not a single catalog model)")
            provider = owners[0]
        merged.setdefault((provider, model_id), {}).update(entry, provider=provider)
    models = []
    for (provider, model_id), entry in merged.items():
        key = f"models[{model_id}]"
        if provider not in providers:
            raise ConfigError(f"{key}.provider: {provider!r} is not a configured provider; "
                              f"declare it under providers or use one of {', '.join(providers)}")
        models.append(_model(entry, key))
    return tuple(models)


def _model(entry: Mapping[str, Any], key: str) -> ModelSpec:
    caps = _string_list(entry.get("capabilities", ["streaming"]), f"{key}.capabilities", CAPABILITIES)
    created = entry.get("created")
    if isinstance(created, str):
        try:
            created = dt.date.fromisoformat(created)
        except ValueError as exc:
            raise ConfigError(f"{key}.created: expected a date like 2025-09-29") from exc
    elif created is not None and not isinstance(created, dt.date):
        raise ConfigError(f"{key}.created: expected a date like 2025-09-29")
    return ModelSpec(
        id=_string(entry.get("id"), f"{key}.id"),
        provider=_string(entry.get("provider"), f"{key}.provider"),
        mode=_choice(entry.get("mode", "chat"), f"{key}.mode", tuple(sorted(MODES))),
        context_window=_non_negative_int(entry.get("context_window", 0), f"{key}.context_window"),
        max_output_tokens=_non_negative_int(entry.get("max_output_tokens", 0), f"{key}.max_output_tokens"),
        input_price=_non_negative_number(entry.get("input_price", 0.0), f"{key}.input_price"),
        output_price=_non_negative_number(entry.get("output_price", 0.0), f"{key}.output_price"),
        capabilities=frozenset(caps),
        status=_choice(entry.get("status", "active"), f"{key}.status", tuple(sorted(STATUSES))),
        created=created,
    )


def _parse_aliases(raw: Any, known: set[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name, target in _mapping(raw, "aliases").items():
        key = f"aliases.{name}"
        target = _string(target, key)
        if name in known:
            raise ConfigError(f"{key}: {name!r} is already a model id; pick another alias name")
        if target not in known:
            raise ConfigError(f"{key}: target {target!r} is not a known model; add it under models "
                              f"or use an id that `extproc models` lists")
        aliases[str(name)] = target
    return aliases


def _parse_fallbacks(raw: Any, known: set[str]) -> dict[str, tuple[str, ...]]:
    chains: dict[str, tuple[str, ...]] = {}
    for name, chain in _mapping(raw, "fallbacks").items():
        key = f"fallbacks.{name}"
        if name not in known:
            raise ConfigError(f"{key}: {name!r} is not a known model or alias")
        if not chain:
            raise ConfigError(f"{key}: expected a non-empty list of model ids to try in order")
        for i, target in enumerate(_string_list(chain, key)):
            if target not in known:
                raise ConfigError(f"{key}[{i}]: {target!r} is not a known model or alias")
        chains[str(name)] = tuple(chain)
    return chains


def _parse_health(raw: Any) -> HealthPolicy:
    section = _mapping(raw, "health")
    names = set(HealthPolicy.__dataclass_fields__)
    _reject_unknown(section, "health", names)
    values = {k: _positive_number(v, f"health.{k}") for k, v in section.items()}
    return replace(HealthPolicy(), **values)
