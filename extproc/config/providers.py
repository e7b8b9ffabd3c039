"""The `providers` section: built-in provider facts merged with the user's, and the API keys they carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from extproc.config.data import builtin_provider_data
from extproc.config.kinds import ALL_KIND_KEYS, expand_kind
from extproc.config.problems import keep, report
from extproc.config.values import (
    boolean,
    choice,
    did_you_mean,
    mapping,
    positive_number,
    reject_unknown,
    string,
    string_list,
)
from extproc.core.errors import ConfigError
from extproc.core.providers import (
    Api,
    ApiRoute,
    AuthStyle,
    ConverseSpec,
    DiscoverySpec,
    InvokeSpec,
    ProbeSpec,
    ProviderSpec,
    parse_base_url,
)
from extproc.core.settings import AwsAuth, Credential, EntraAuth, GoogleAuth
from extproc.formats import ENDPOINTS
from extproc.request.transforms import PROVIDER_TRANSFORMS

_PROVIDER_KEYS = {"base_url", "auth", "api_key", "api_keys", "api_key_env", "headers", "apis", "discovery", "probe",
                  "transform", "prefer", "model_prefixes", "rotation", "stream_usage", "stream_only",
                  "translation", "drop_fields", "lite_header", "invoke", "converse"}
ROTATIONS = ("round-robin", "fill-first")
_DISCOVERY_STYLES = ("openai", "anthropic", "gemini", "copilot")


def discovery_defaults(raw: Any) -> DiscoverySpec:
    """The top-level `discovery` section: defaults every provider's discovery inherits."""
    if raw is False:
        return DiscoverySpec("", "openai", Api.OPENAI, enabled=False)
    section = mapping({} if raw is True or raw is None else raw, "discovery")
    reject_unknown(section, "discovery", {"enabled", "ttl", "timeout"})
    return DiscoverySpec("", "openai", Api.OPENAI, enabled=boolean(section.get("enabled", True), "discovery.enabled"),
                         ttl=positive_number(section.get("ttl", 300), "discovery.ttl"),
                         timeout=positive_number(section.get("timeout", 10), "discovery.timeout"))



def _discovery(raw: Any, key: str, defaults: DiscoverySpec, apis: Mapping[Api, ApiRoute]) -> DiscoverySpec | None:
    if raw is None:
        return None
    if raw is False:
        return replace(defaults, enabled=False)
    section = mapping(raw, key)
    reject_unknown(section, key, {"path", "style", "api", "enabled", "ttl", "timeout"})
    path = string(section.get("path"), f"{key}.path")
    if not path.startswith("/"):
        raise ConfigError(f"{key}.path: a path below base_url starts with '/', got {path!r}")
    style = choice(section.get("style", "openai"), f"{key}.style", _DISCOVERY_STYLES)
    api = Api(choice(section.get("api", "openai"), f"{key}.api", tuple(a.value for a in Api)))
    if api not in apis:
        raise ConfigError(f"{key}.api: the provider has no apis.{api.value} entry to take the auth style from")
    return DiscoverySpec(
        path=path, style=style, api=api,
        enabled=defaults.enabled and boolean(section.get("enabled", True), f"{key}.enabled"),
        ttl=positive_number(section.get("ttl", defaults.ttl), f"{key}.ttl"),
        timeout=positive_number(section.get("timeout", defaults.timeout), f"{key}.timeout"),
    )


def _probe(raw: Any, key: str, discovery: DiscoverySpec | None, apis: Mapping[Api, ApiRoute]) -> ProbeSpec | None:
    """`probe: false`, a call of its own ({path, method, body, api}), or by default the model list."""
    if raw is False:
        return None
    if raw is None:
        return ProbeSpec(discovery.path, discovery.api, timeout=discovery.timeout) if discovery else None
    section = mapping(raw, key)
    reject_unknown(section, key, {"path", "method", "body", "api", "timeout"})
    path = string(section.get("path"), f"{key}.path")
    if not path.startswith("/"):
        raise ConfigError(f"{key}.path: a path below base_url starts with '/', got {path!r}")
    method = choice(section.get("method", "GET"), f"{key}.method", ("GET", "POST"))
    api = Api(choice(section.get("api", "openai"), f"{key}.api", tuple(a.value for a in Api)))
    if api not in apis:
        raise ConfigError(f"{key}.api: the provider has no apis.{api.value} entry to take the auth style from")
    body = section.get("body")
    if body is not None and method != "POST":
        raise ConfigError(f"{key}.body: only a POST probe sends a body; set {key}.method: POST or drop the body")
    return ProbeSpec(path, api, method, orjson.dumps(mapping(body, f"{key}.body")) if body is not None else None,
                     positive_number(section.get("timeout", 10), f"{key}.timeout"))


def parse_providers(raw: Any, discovery: DiscoverySpec) -> tuple[dict[str, ProviderSpec], tuple[Credential, ...]]:
    """The built-in providers with the user's merged in, and their API keys; a provider with an error is left
    out (its error reported), the others are still checked."""
    user = keep({}, mapping, raw, "providers")
    merged: dict[str, dict[str, Any]] = {name: dict(data) for name, data in builtin_provider_data().items()}
    for name, section in user.items():
        key = f"providers.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            report(ConfigError(f"{key}: provider names are lower-case letters, digits, '-' and '_'"))
            continue
        section = keep(None, mapping, section or {}, key)
        if section is None:
            continue
        reject_unknown(section, key, _PROVIDER_KEYS | ALL_KIND_KEYS)
        if "kind" in section and name in merged:
            report(ConfigError(f"{key}.kind: {name} is a built-in provider; give yours a name of its own "
                               f"(e.g. providers.{section['kind']}-1)"))
            continue
        section = expand_kind(section, key)
        if section is None:
            continue
        if name not in merged and ("base_url" not in section or "apis" not in section):
            report(ConfigError(f"{key}: not a built-in provider{did_you_mean(name, merged)}; a provider of your "
                               f"own needs base_url and apis (e.g. apis: {{openai: /v1}})"))
            continue
        target = merged.setdefault(name, {})
        if isinstance(section.get("discovery"), dict) and isinstance(target.get("discovery"), dict):
            section = {**section, "discovery": {**target["discovery"], **section["discovery"]}}
        target.update(section)
    providers: dict[str, ProviderSpec] = {}
    credentials: list[Credential] = []
    for name, data in merged.items():
        key = f"providers.{name}"
        spec = keep(None, _provider, name, data, key, discovery)
        if spec is not None:
            providers[name] = spec
        credentials.extend(keep([], _credentials, name, data, key))
    return providers, tuple(credentials)


def _provider(name: str, data: Mapping[str, Any], key: str, discovery: DiscoverySpec) -> ProviderSpec:
    base_url = string(data.get("base_url"), f"{key}.base_url")
    try:
        parse_base_url(base_url)
    except ValueError as exc:
        raise ConfigError(f"{key}.base_url: {exc}; write e.g. https://api.example.com") from exc
    auth = choice(data.get("auth", "bearer"), f"{key}.auth", tuple(s.value for s in AuthStyle))
    headers = {str(k).lower(): str(v) for k, v in mapping(data.get("headers") or {}, f"{key}.headers").items()}
    apis: dict[Api, ApiRoute] = {}
    for api_name, route in mapping(data.get("apis") or {}, f"{key}.apis").items():
        api_key = f"{key}.apis.{api_name}"
        api = Api(choice(api_name, api_key, tuple(a.value for a in Api)))
        endpoints: frozenset[str] | None = None
        if isinstance(route, str) or route is None:
            path, route_auth = route or "", auth
        else:
            route = mapping(route, api_key)
            reject_unknown(route, api_key, {"path", "auth", "endpoints"})
            path = route.get("path") or ""
            route_auth = choice(route.get("auth", auth), f"{api_key}.auth", tuple(s.value for s in AuthStyle))
            if "endpoints" in route:
                endpoints = frozenset(string_list(route["endpoints"], f"{api_key}.endpoints", ENDPOINTS[api]))
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
    found = _discovery(data.get("discovery"), f"{key}.discovery", discovery, apis)
    return ProviderSpec(name=name, base_url=base_url, auth=AuthStyle(auth), apis=apis, headers=headers,
                        api_key_env=str(env_name) if env_name else None,
                        discovery=found, probe=_probe(data.get("probe"), f"{key}.probe", found, apis),
                        transform=choice(data["transform"], f"{key}.transform", PROVIDER_TRANSFORMS)
                        if data.get("transform") else None,
                        prefer=choice(data.get("prefer", "api_key"), f"{key}.prefer", ("api_key", "login")),
                        model_prefixes=tuple(string_list(data.get("model_prefixes") or [], f"{key}.model_prefixes")),
                        rotation=choice(data.get("rotation", "round-robin"), f"{key}.rotation", ROTATIONS),
                        stream_usage=boolean(data.get("stream_usage", True), f"{key}.stream_usage"),
                        stream_only=boolean(data.get("stream_only", False), f"{key}.stream_only"),
                        translation=boolean(data.get("translation", True), f"{key}.translation"),
                        drop_fields=tuple(string_list(data.get("drop_fields") or [], f"{key}.drop_fields")),
                        lite_header=string(data["lite_header"], f"{key}.lite_header").lower()
                        if data.get("lite_header") else None,
                        deployments=dict(data.get("deployments") or {}), api_version=data.get("api_version"),
                        deployment_endpoints={m: frozenset(e) for m, e in
                                              (data.get("deployment_endpoints") or {}).items()},
                        invoke=_invoke(data["invoke"], f"{key}.invoke") if data.get("invoke") else None,
                        converse=_converse(data["converse"], f"{key}.converse") if data.get("converse") else None)


_FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


def _converse(raw: Any, key: str) -> ConverseSpec:
    """OpenAI's chat API written as a cloud's own, Bedrock's Converse (a kind's data; each part overridable)."""
    section = mapping(raw, key)
    reject_unknown(section, key, {"whole", "stream", "stop_reasons"})
    reasons = mapping(section.get("stop_reasons") or {}, f"{key}.stop_reasons")
    return ConverseSpec(whole=string(section.get("whole"), f"{key}.whole"),
                        stream=string(section.get("stream"), f"{key}.stream"),
                        stop_reasons={str(k): choice(v, f"{key}.stop_reasons.{k}", _FINISH_REASONS)
                                      for k, v in reasons.items()})


def _invoke(raw: Any, key: str) -> InvokeSpec:
    """Anthropic's Messages API as a cloud's call on the model's path (a kind's data; each part overridable)."""
    section = mapping(raw, key)
    reject_unknown(section, key, {"anthropic_version", "whole", "stream", "betas", "keeps_stream", "statuses",
                                  "stream_errors", "accepted_betas", "renamed_betas", "count",
                                  "count_betas"})

    def statuses(name: str) -> dict[Any, int]:
        found = mapping(section.get(name) or {}, f"{key}.{name}")
        for what, status in found.items():
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ConfigError(f"{key}.{name}.{what}: {status!r} is not an HTTP error status (400-599)")
        return dict(found)
    return InvokeSpec(anthropic_version=string(section.get("anthropic_version"), f"{key}.anthropic_version"),
                      whole=string(section.get("whole"), f"{key}.whole"),
                      stream=string(section.get("stream"), f"{key}.stream"),
                      betas=string(section["betas"], f"{key}.betas") if section.get("betas") else None,
                      accepted_betas=frozenset(string_list(section["accepted_betas"], f"{key}.accepted_betas"))
                      if section.get("accepted_betas") is not None else None,
                      renamed_betas={str(k): string(v, f"{key}.renamed_betas.{k}")
                                     for k, v in mapping({} if section.get("renamed_betas") is None
                                                         else section["renamed_betas"],
                                                         f"{key}.renamed_betas").items()},
                      keeps_stream=boolean(section.get("keeps_stream", False), f"{key}.keeps_stream"),
                      count=_count_call(section["count"], f"{key}.count") if section.get("count") else None,
                      count_betas=frozenset(string_list(section["count_betas"], f"{key}.count_betas"))
                      if section.get("count_betas") is not None else None,
                      statuses={int(k): v for k, v in statuses("statuses").items()},
                      stream_errors={str(k): v for k, v in statuses("stream_errors").items()})


def _count_call(raw: Any, key: str) -> str:
    """A count call is the segment in place of the model's and the call after it, as `count-tokens:rawPredict`."""
    value = string(raw, key)
    segment, colon, call = value.partition(":")
    if not segment or not colon or not call or "/" in value:
        raise ConfigError(f"{key}: {value!r} is not a path segment and its call, e.g. count-tokens:rawPredict")
    return value


def _credentials(provider: str, data: Mapping[str, Any], key: str) -> list[Credential]:
    if isinstance(data.get("google"), dict):  # a Vertex AI provider (its kind wrote it): one Google credential
        return [Credential(id=f"{provider}:google", provider=provider, google=GoogleAuth(data["google"]["file"]))]
    if isinstance(data.get("entra"), dict):  # an Azure OpenAI provider with auth: entra: one Entra ID credential
        return [Credential(id=f"{provider}:entra", provider=provider, auth=AuthStyle.BEARER,
                           entra=EntraAuth(**data["entra"]))]
    if isinstance(data.get("aws"), dict):  # a Bedrock provider without API keys: AWS credentials sign
        aws = data["aws"]
        return [Credential(id=f"{provider}:aws", provider=provider,
                           aws=AwsAuth(region=aws["region"], profile=aws.get("profile")))]
    keys: list[str] = []
    if data.get("api_key") not in (None, ""):
        keys.append(string(data["api_key"], f"{key}.api_key"))
    raw_list = data.get("api_keys") or []
    if not isinstance(raw_list, list):
        raise ConfigError(f"{key}.api_keys: expected a list of keys")
    keys.extend(string(k, f"{key}.api_keys[{i}]") for i, k in enumerate(raw_list) if k != "")
    for i, k in enumerate(keys):
        if not all(33 <= ord(c) <= 126 for c in k):
            raise ConfigError(f"{key}: key {i + 1} has spaces, line breaks or non-ASCII characters "
                              "(a pasted key often carries a newline); no provider issues such keys")
    return [Credential(id=f"{provider}:key{i + 1}", provider=provider, secret=k) for i, k in enumerate(keys)]

