"""Provider kinds: a provider declared from the few keys its cloud names it by (`kind: azure` and its endpoint,
`kind: vertex` and its project and location), turned into the generic provider facts `providers.py` checks. The
facts themselves are data (providers.yaml)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from extproc.config.data import builtin_catalog_data, builtin_kind_data
from extproc.config.problems import report
from extproc.config.values import choice, mapping, string, string_list
from extproc.core.errors import ConfigError

# The keys only a kind takes, by kind; checked here, never passed on as they were written.
KIND_KEYS: dict[str, frozenset[str]] = {
    "azure": frozenset({"endpoint", "deployments", "api_version", *{
        "tenant_id", "client_id", "client_secret", "client_certificate", "authority", "scope"}}),
    "vertex": frozenset({"project", "location", "credentials_file", "endpoint", "models"}),
    "bedrock": frozenset({"region", "endpoint", "models", "profile", "inference_profile"}),
}
ALL_KIND_KEYS = frozenset({"kind"}.union(*KIND_KEYS.values()))
# Azure's rules for a deployment's name (2-64 of letters, digits, '.', '_' and '-') and an api-version.
_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,63}")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
# Google Cloud's project ids (6-30 of lower-case letters, digits and '-'; a legacy one behind its domain) and
# Vertex AI's locations (us-central1, europe-west4, global…).
_PROJECT = re.compile(r"([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_LOCATION = re.compile(r"[a-z][a-z0-9-]{1,30}[a-z0-9]")
# Microsoft Entra ID: a tenant (its directory id, or a domain) and an application's (client) id, as azure-identity
# takes them; the keys that only Entra ID authentication takes.
_TENANT = re.compile(r"[A-Za-z0-9.-]+")
_CLIENT_ID = re.compile(r"[A-Za-z0-9-]+")
_ENTRA_KEYS = ("tenant_id", "client_id", "client_secret", "client_certificate", "authority", "scope")
# AWS regions (us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1…) and Bedrock model or profile ids
# (anthropic.claude-…-v1:0, us.anthropic.…, or a profile's ARN).
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_BEDROCK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,255}")
_PROFILES = ("global", "us", "eu", "apac", "none")


def expand_kind(section: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The section as a generic provider's (its kind's facts under the user's), or None when it cannot be one; every
    error is reported, not only the first."""
    kind = section.get("kind")
    if kind is None:
        stray = sorted(ALL_KIND_KEYS & section.keys())
        for name in stray:
            owner = next(k for k, keys in KIND_KEYS.items() if name in keys)
            report(ConfigError(f"{key}.{name}: only a provider with a kind takes it; add kind: {owner}"))
        return None if stray else section
    try:
        kind = choice(kind, f"{key}.kind", tuple(KIND_KEYS))
    except ConfigError as exc:
        report(exc)
        return None
    for name in sorted(ALL_KIND_KEYS - KIND_KEYS[kind] - {"kind"} & section.keys()):
        report(ConfigError(f"{key}.{name}: not a key of kind {kind}; drop it"))
    expand = {"azure": _azure, "vertex": _vertex, "bedrock": _bedrock}[kind]
    facts = dict(builtin_kind_data()[kind])
    if isinstance(section.get("invoke"), dict) and isinstance(facts.get("invoke"), dict):
        section = {**section, "invoke": {**facts["invoke"], **section["invoke"]}}  # a part overridden, not all
    return expand(section, key, facts)


def _azure(section: dict[str, Any], key: str, facts: dict[str, Any]) -> dict[str, Any] | None:
    deployment_apis = facts.pop("deployment_apis")
    ok = True
    if "base_url" in section:
        report(ConfigError(f"{key}.base_url: kind azure takes the resource's endpoint instead; write "
                           "endpoint: https://{resource}.openai.azure.com"))
        ok = False
    scope = facts.pop("entra_scope")
    entra = _entra(section, key, scope)
    endpoint = _azure_endpoint(section.get("endpoint"), f"{key}.endpoint")
    deployments = _deployments(section.get("deployments"), f"{key}.deployments")
    api_version = _api_version(section.get("api_version"), f"{key}.api_version")
    if not ok or entra is False or endpoint is None or deployments is None or api_version is False:
        return None
    own = {k: v for k, v in section.items() if k not in ALL_KIND_KEYS}
    generic = {**facts, **own, "base_url": endpoint, "deployments": deployments}
    if entra is not None:  # a token of the resource's identity as the bearer, instead of its key in api-key
        generic.update(auth="bearer", entra=entra)
    if api_version is not None:  # the deployment paths, which take it
        generic.update(apis=deployment_apis, api_version=api_version)
    return generic


def _entra(section: dict[str, Any], key: str, scope: str) -> dict[str, Any] | None | bool:
    """`auth: entra`'s settings (a client secret or certificate, else azure-identity's default chain); None: the
    resource's key (`auth: api-key`, the default). False: bad, every mistake reported."""
    auth = section.get("auth", "api-key")
    if auth not in ("api-key", "entra"):
        report(ConfigError(f"{key}.auth: {auth!r} is not one of api-key (the resource's key, in api_key) or entra "
                           "(Microsoft Entra ID tokens from azure-identity)"))
        return False
    if auth == "api-key":
        for name in (n for n in _ENTRA_KEYS if n in section):
            report(ConfigError(f"{key}.{name}: only Microsoft Entra ID authentication takes it; add auth: entra, "
                               "or drop it to send the resource's key"))
        return False if any(n in section for n in _ENTRA_KEYS) else None
    ok = True
    for name in ("api_key", "api_keys"):
        if name in section:
            report(ConfigError(f"{key}.{name}: auth: entra sends an Entra ID token instead of the resource's key; "
                               "drop it (or drop auth: entra to send the key)"))
            ok = False
    found: dict[str, Any] = {"scope": scope}
    for name, pattern, what in (("tenant_id", _TENANT, "a tenant's directory id or domain"),
                                ("client_id", _CLIENT_ID, "an application's (client) id")):
        value = section.get(name)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            report(ConfigError(f"{key}.{name}: {value!r} is not {what}; the portal shows it on the app "
                               "registration's Overview (or the managed identity's)"))
            ok = False
        found[name] = value
    secret, certificate = section.get("client_secret"), section.get("client_certificate")
    if secret is not None and certificate is not None:
        report(ConfigError(f"{key}.client_secret: an application signs in with a client secret or a certificate, "
                           "not both; drop one"))
        ok = False
    if secret is not None and not isinstance(secret, str):  # empty: its variable unset, which is reported
        report(ConfigError(f"{key}.client_secret: expected the secret's value, e.g. ${{AZURE_CLIENT_SECRET}}"))
        ok = False
    if certificate is not None and (not isinstance(certificate, str) or not Path(certificate).is_file()):
        report(ConfigError(f"{key}.client_certificate: {certificate!r} is not a readable file; write the path of a "
                           "PEM file holding the certificate and its private key"))
        ok = False
    signs_in = secret is not None or certificate is not None
    for name in ("tenant_id", "client_id"):
        if signs_in and found[name] is None:
            report(ConfigError(f"{key}.{name}: an application signing in with its "
                               f"{'client_secret' if secret is not None else 'client_certificate'} needs it"))
            ok = False
    if not signs_in and found["tenant_id"] is not None:
        report(ConfigError(f"{key}.tenant_id: goes with client_secret or client_certificate; without them, "
                           "azure-identity's default chain reads AZURE_TENANT_ID itself: drop it"))
        ok = False
    authority = section.get("authority")
    if authority is not None:
        try:
            parts = urlsplit(authority if "://" in str(authority) else f"https://{authority}")
        except ValueError:
            parts = urlsplit("")
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
            report(ConfigError(f"{key}.authority: {authority!r} is not a sign-in host; write e.g. "
                               "login.microsoftonline.us (another cloud's), or drop it for Azure's public cloud"))
            ok = False
        else:
            authority = f"https://{parts.netloc}"
    custom = section.get("scope")
    if custom is not None and (not isinstance(custom, str) or not custom.endswith("/.default")):
        report(ConfigError(f"{key}.scope: {custom!r} is not a resource's scope; write e.g. {scope}, or drop it"))
        ok = False
    return ok and {**found, "scope": custom or scope, "client_secret": secret, "client_certificate": certificate,
                   "authority": authority}


def _endpoint(value: Any, key: str, example: str, what: str) -> str | None:
    """A cloud's endpoint: scheme and host, nothing after (the gateway adds the API's paths itself)."""
    try:
        parts = urlsplit(string(value, key))
    except ConfigError as exc:
        report(exc)
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        report(ConfigError(f"{key}: {value!r} is not an http(s) URL with a host; write e.g. {example}"))
        return None
    if parts.path.strip("/") or parts.query:
        report(ConfigError(f"{key}: the endpoint is the {what} alone; drop {parts.path}"
                           f"{'?' + parts.query if parts.query else ''} (the gateway adds the API's paths itself)"))
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _azure_endpoint(value: Any, key: str) -> str | None:
    """The resource's endpoint, as the portal shows it (Keys and Endpoint)."""
    example = "https://{resource}.openai.azure.com"
    if value is None:
        report(ConfigError(f"{key}: kind azure needs its resource's endpoint, e.g. {example} (the portal: your "
                           "resource → Keys and Endpoint)"))
        return None
    return _endpoint(value, key, example, "resource's address")


def _deployments(value: Any, key: str) -> dict[str, str] | None:
    """Model id → the name of the deployment that serves it; each one is a model this provider serves."""
    if value is None:
        return {}
    try:
        found = mapping(value, key)
    except ConfigError as exc:
        report(ConfigError(f"{exc}; write model id: deployment name, e.g. {{gpt-5-mini: my-deployment}}"))
        return None
    good: dict[str, str] = {}
    for model, name in found.items():
        if not isinstance(name, str) or not _DEPLOYMENT.fullmatch(name):
            report(ConfigError(f"{key}.{model}: {name!r} is not a deployment name (2 to 64 letters, digits, '.', "
                               "'_' or '-'); write the name the portal shows under Deployments"))
            continue
        good[str(model)] = name
    return good if len(good) == len(found) else None


def _api_version(value: Any, key: str) -> str | None | bool:
    """The api-version of the deployment paths (e.g. 2024-10-21); None: the v1 API, which takes none. False: bad."""
    if value is None:
        return None
    if isinstance(value, dt.date):  # YAML reads an unquoted 2024-10-21 as a date
        value = value.isoformat()
    if isinstance(value, str) and _API_VERSION.fullmatch(value):
        return value
    report(ConfigError(f"{key}: {value!r} is not an Azure OpenAI api-version; write one like 2024-10-21 or "
                       "2025-04-01-preview (in quotes), or drop it to use the v1 API"))
    return False


def _vertex(section: dict[str, Any], key: str, facts: dict[str, Any]) -> dict[str, Any] | None:
    """Vertex AI: Google's models under a project and location, with a token from Google credentials."""
    ok = True
    for name, fix in (("base_url", "write endpoint: only to reach Vertex AI at another address"),
                      ("api_key", "it authenticates with Google credentials (credentials_file or application "
                                  "default credentials)"),
                      ("api_keys", "it authenticates with Google credentials"),
                      ("auth", "it sends a Google access token as a bearer")):
        if name in section:
            report(ConfigError(f"{key}.{name}: not a key of kind vertex; {fix}: drop it"))
            ok = False
    project = _named(section.get("project"), f"{key}.project", _PROJECT, "a Google Cloud project id, e.g. my-project")
    location = _named(section.get("location"), f"{key}.location", _LOCATION, "a Vertex AI location, e.g. "
                      "us-central1 or global")
    file = _credentials_file(section.get("credentials_file"), f"{key}.credentials_file")
    endpoint = None if section.get("endpoint") is None else \
        _endpoint(section["endpoint"], f"{key}.endpoint", "https://us-central1-aiplatform.googleapis.com",
                  "service's address")
    claude_ids = facts.pop("claude_ids")
    models = _models(section.get("models"), f"{key}.models", claude_ids)
    if not ok or project is None or location is None or file is False or models is None \
            or (section.get("endpoint") is not None and endpoint is None):
        return None
    own = {k: v for k, v in section.items() if k not in ALL_KIND_KEYS}
    regional, global_url = facts.pop("regional_url"), facts.pop("global_url")
    base_url = endpoint or (global_url if location == "global" else regional.format(location=location))
    # {project} and {location} are this provider's for good; {deployment} stays, filled per request.
    apis = {api: {**route, "path": route["path"].format(project=quote(project, safe=":"), location=location,
                                                         deployment="{deployment}")}
            for api, route in facts.pop("apis").items()}
    # A Claude model goes to its publisher's path (anthropic, the Messages API), every other one to Google's.
    claude = {m for m, vertex_id in models.items() if _is_claude(vertex_id)}
    return {**facts, **own, "base_url": base_url, "apis": apis, "deployments": models,
            "deployment_endpoints": {m: ["messages"] if m in claude else ["gemini"] for m in models},
            "google": {"file": file}}


def _is_claude(model: str) -> bool:
    return model.startswith("claude-")


def _named(value: Any, key: str, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None:
        report(ConfigError(f"{key}: kind vertex needs it: {what}"))
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        report(ConfigError(f"{key}: {value!r} is not {what}"))
        return None
    return value


def _credentials_file(value: Any, key: str) -> str | None | bool:
    """A service-account key (or ADC) file; None: application default credentials. False: bad."""
    if value is None:
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        report(ConfigError(f"{key}: {value!r} is not a readable file; write the path of a service account's JSON "
                           "key, or drop it to use application default credentials"))
        return False
    return value


def _models(value: Any, key: str, claude_ids: dict[str, str]) -> dict[str, str] | None:
    """Model id → the id Vertex AI knows it by: by default every Gemini model of the catalog that generates content,
    and the Claude models whose Vertex ids are known (`claude_ids`). A list names ids (a Claude one by its known
    Vertex id); a mapping names each one's Vertex id (claude-sonnet-4-5: claude-sonnet-4-5@20250929)."""
    if value is None:
        gemini = [m["id"] for m in builtin_catalog_data() if m["provider"] == "gemini" and m.get("mode") == "chat"]
        return {**{m: m for m in gemini}, **claude_ids}
    if isinstance(value, dict):
        return _ids(value, key, "the id the Model Garden shows, e.g. claude-sonnet-4-5@20250929", _BEDROCK_ID)
    try:
        return {m: claude_ids.get(m, m) for m in string_list(value, key)}
    except ConfigError as exc:
        report(ConfigError(f"{exc}; write the model ids it serves, e.g. [gemini-2.5-flash, claude-sonnet-4-5]"))
        return None


def _ids(value: dict[Any, Any], key: str, what: str, pattern: re.Pattern[str]) -> dict[str, str] | None:
    """Model id → the cloud's id for it; each bad one reported."""
    good: dict[str, str] = {}
    for model, cloud_id in value.items():
        if not isinstance(cloud_id, str) or not pattern.fullmatch(cloud_id):
            report(ConfigError(f"{key}.{model}: {cloud_id!r} is not a model id of the cloud; write {what}"))
            continue
        good[str(model)] = cloud_id
    return good if len(good) == len(value) else None


def _bedrock(section: dict[str, Any], key: str, facts: dict[str, Any]) -> dict[str, Any] | None:
    """AWS Bedrock: Claude in a region, each request signed with AWS credentials (or sent with a Bedrock API key)."""
    ok = True
    for name, fix in (("base_url", "write endpoint: only to reach Bedrock at another address (a VPC endpoint)"),
                      ("auth", "it signs with AWS credentials, or sends api_key as a bearer")):
        if name in section:
            report(ConfigError(f"{key}.{name}: not a key of kind bedrock; {fix}: drop it"))
            ok = False
    region = section.get("region")
    if region is None or not isinstance(region, str) or not _REGION.fullmatch(region):
        report(ConfigError(f"{key}.region: kind bedrock needs the AWS region its models are enabled in, e.g. "
                           f"us-east-1{'' if region is None else f', not {region!r}'}"))
        ok = False
    profile = section.get("profile")
    if profile is not None and (not isinstance(profile, str) or not profile.strip()):
        report(ConfigError(f"{key}.profile: the name of a profile of the shared AWS config (~/.aws/config), or drop "
                           "it to use the standard chain"))
        ok = False
    if profile is not None and section.get("api_key") not in (None, ""):
        report(ConfigError(f"{key}.profile: a provider signs with AWS credentials or sends a Bedrock API key, not "
                           "both; drop profile or api_key"))
        ok = False
    geography = _geography(section.get("inference_profile"), region if isinstance(region, str) else "",
                           f"{key}.inference_profile", facts.pop("geographies"))
    endpoint = None if section.get("endpoint") is None else \
        _endpoint(section["endpoint"], f"{key}.endpoint", "https://bedrock-runtime.us-east-1.amazonaws.com",
                  "service's address")
    claude_ids = facts.pop("claude_ids")
    models = _bedrock_models(section.get("models"), f"{key}.models", claude_ids,
                             geography if isinstance(geography, str) else None)
    if not ok or geography is False or models is None or (section.get("endpoint") is not None and endpoint is None):
        return None
    own = {k: v for k, v in section.items() if k not in ALL_KIND_KEYS}
    regional = facts.pop("regional_url")
    base_url = endpoint or regional.format(region=region)
    # A Claude model takes Anthropic's Messages API (InvokeModel), every other one OpenAI's chat (Converse).
    generic = {**facts, **own, "base_url": base_url, "deployments": models,
               "deployment_endpoints": {m: ["messages"] if _is_bedrock_claude(b) else ["chat"]
                                        for m, b in models.items()}}
    if section.get("api_key") in (None, "") and not section.get("api_keys"):
        generic["aws"] = {"region": region, "profile": profile}  # signed: one credential, AWS's chain
    return generic


def _is_bedrock_claude(bedrock_id: str) -> bool:
    """A Bedrock id (or inference profile, or its ARN) of Anthropic's: `anthropic.` after any geography prefix."""
    return "anthropic." in bedrock_id.rpartition("/")[2]


def _geography(value: Any, region: str, key: str, geographies: dict[str, str]) -> str | None | bool:
    """The inference profiles' prefix (us, eu, apac, global), None for bare model ids; False: bad."""
    if value is None:
        return geographies.get(region.partition("-")[0])
    if value not in _PROFILES:
        report(ConfigError(f"{key}: {value!r} is not one of {', '.join(_PROFILES)}; write the cross-region inference "
                           "profile the models go through, or none for the models' own ids"))
        return False
    return None if value == "none" else str(value)


def _bedrock_models(value: Any, key: str, claude_ids: dict[str, str], geography: str | None) -> dict[str, str] | None:
    """Model id → the Bedrock id (or inference profile) requests name: by default the catalog's Claude models,
    through the region's cross-region profile; a list names catalog ids, a mapping each one's own Bedrock id."""
    def profiled(bedrock_id: str) -> str:
        return f"{geography}.{bedrock_id}" if geography else bedrock_id
    if value is None:
        return {m: profiled(b) for m, b in claude_ids.items()}
    if isinstance(value, dict):
        return _ids(value, key, "a Bedrock model id or inference profile, e.g. "
                    "us.anthropic.claude-sonnet-4-5-20250929-v1:0", _BEDROCK_ID)
    try:
        names = string_list(value, key)
    except ConfigError as exc:
        report(ConfigError(f"{exc}; write the model ids it serves, e.g. [claude-sonnet-4-5]"))
        return None
    unknown = [m for m in names if m not in claude_ids]
    if unknown:
        report(ConfigError(f"{key}: no known Bedrock id for {', '.join(unknown)}; write models as a mapping, "
                           f"e.g. {{{unknown[0]}: us.anthropic.…-v1:0}}"))
        return None
    return {m: profiled(claude_ids[m]) for m in names}
