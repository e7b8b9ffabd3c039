"""The `oauth` section: built-in login flows with the user's per-flow overrides, validated."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from extproc.config.data import builtin_flow_data
from extproc.config.problems import keep, report
from extproc.config.values import mapping, positive_number, reject_unknown, string, string_list
from extproc.core.errors import ConfigError
from extproc.core.flows import (
    DEVICE_STYLES,
    Credits,
    Device,
    Flow,
    OwnClient,
    Usage,
    WindowEvent,
    WindowLimit,
    Windows,
)
from extproc.core.providers import AuthStyle

FLOW_KEYS = {"title", "provider", "upstream", "authorize_url", "token_url", "token_format", "refresh_format",
             "client_id", "client_secret", "scopes", "authorize_params", "refresh_params", "redirect",
             "create_api_key_url", "userinfo_url", "code_assist_url", "project", "use", "device",
             "refresh_scope", "own_client", "other_clients", "exchange_url", "quota_url"}
OTHER_CLIENTS = ("refuse", "send")
DEVICE_KEYS = {"style", "code_url", "poll_url", "verify_url", "redirect_uri"}


def parse_flows(raw: Any, providers: Collection[str]) -> dict[str, Flow]:
    """Built-in flows with the user's `oauth.<flow>` overrides merged in, validated; a flow with an error is
    left out (its error reported)."""
    merged = builtin_flow_data()
    user = keep({}, mapping, raw or {}, "oauth")
    for name, section in user.items():
        key = f"oauth.{name}"
        if name not in merged:
            report(ConfigError(f"{key}: unknown login; expected one of {', '.join(merged)}"))
            continue
        section = keep(None, mapping, section, key)
        if section is not None:
            reject_unknown(section, key, FLOW_KEYS)
            merged[name] = {**merged[name], **section}
    flows = {name: keep(None, _flow, name, data, providers) for name, data in merged.items()}
    return {name: flow for name, flow in flows.items() if flow is not None}


def _windows(raw: Any, key: str) -> Windows | None:
    if raw is None:
        return None
    section = mapping(raw, key)
    reject_unknown(section, key, {"status", "limits", "credits", "event"})
    limits = []
    for i, entry in enumerate(section.get("limits") or []):
        entry = mapping(entry, f"{key}.limits[{i}]")
        reject_unknown(entry, f"{key}.limits[{i}]", {"name", "utilization", "reset", "scale", "minutes"})
        limits.append(WindowLimit(string(entry.get("utilization"), f"{key}.limits[{i}].utilization").lower(),
                                  string(entry.get("reset"), f"{key}.limits[{i}].reset").lower(),
                                  positive_number(entry.get("scale", 1), f"{key}.limits[{i}].scale"),
                                  string(entry.get("name", f"window{i + 1}"), f"{key}.limits[{i}].name"),
                                  string(entry["minutes"], f"{key}.limits[{i}].minutes").lower()
                                  if entry.get("minutes") is not None else None))
    status = mapping(section.get("status") or {}, f"{key}.status")
    reject_unknown(status, f"{key}.status", {"header", "exhausted"})
    header = string(status["header"], f"{key}.status.header").lower() if status else None
    exhausted = frozenset(string_list(status.get("exhausted") or [], f"{key}.status.exhausted"))
    return Windows(tuple(limits), header, exhausted, _credits(section.get("credits"), f"{key}.credits"),
                   _window_event(section.get("event"), f"{key}.event"))


def _credits(raw: Any, key: str) -> Credits | None:
    if raw is None:
        return None
    section = mapping(raw, key)
    reject_unknown(section, key, {"has", "unlimited"})
    return Credits(string(section.get("has"), f"{key}.has").lower(),
                   string(section.get("unlimited"), f"{key}.unlimited").lower())


def _window_event(raw: Any, key: str) -> WindowEvent | None:
    """`event`: a stream event read as the headers it names ({type, fields: {dotted.path: header}})."""
    if raw is None:
        return None
    section = mapping(raw, key)
    reject_unknown(section, key, {"type", "fields"})
    fields = mapping(section.get("fields"), f"{key}.fields")
    if not fields:
        raise ConfigError(f"{key}.fields: name at least one field of the event and the header it is read as")
    return WindowEvent(string(section.get("type"), f"{key}.type"),
                       {str(path): string(header, f"{key}.fields.{path}").lower() for path, header in fields.items()})


def _device(raw: Any, key: str) -> Device | None:
    """`oauth.<flow>.device`: how the login is done with a code typed on another machine."""
    if raw is None:
        return None
    section = mapping(raw, key)
    reject_unknown(section, key, DEVICE_KEYS)
    style = section.get("style")
    if style not in DEVICE_STYLES:
        raise ConfigError(f"{key}.style: expected one of {', '.join(DEVICE_STYLES)}")
    urls = {k: string(section[k], f"{key}.{k}") if section.get(k) is not None else None
            for k in ("code_url", "poll_url", "verify_url", "redirect_uri")}
    for required in ("code_url", "poll_url", *(("redirect_uri",) if style == "openai" else ())):
        if not urls[required]:
            raise ConfigError(f"{key}.{required}: expected the URL (a {style} device login needs it)")
    for k, url in urls.items():
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.{k}: expected an http(s) URL, got {url!r}")
    return Device(style=str(style), code_url=str(urls["code_url"]), poll_url=str(urls["poll_url"]),
                  verify_url=urls["verify_url"], redirect_uri=urls["redirect_uri"])


def _flow(name: str, data: Mapping[str, Any], providers: Collection[str]) -> Flow:
    key = f"oauth.{name}"
    device = _device(data.get("device"), f"{key}.device")
    if device is None and not data.get("authorize_url"):
        raise ConfigError(f"{key}.authorize_url: expected a non-empty string (or a `device` section for a "
                          "login by device code only)")
    token_url = data.get("token_url") or (device.poll_url if device and device.style == "rfc8628" else None)
    data = {**data, "token_url": token_url}  # an RFC 8628 login's token endpoint is the one it polls
    browser = ("authorize_url",) if data.get("authorize_url") is not None else ()  # `null`: by device code only
    for required in ("provider", "upstream", "token_url", "client_id", *browser):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ConfigError(f"{key}.{required}: expected a non-empty string")
    for ref in ("provider", "upstream"):
        if data[ref] not in providers:
            raise ConfigError(f"{key}.{ref}: {data[ref]!r} is not a configured provider")
    for fmt in ("token_format", "refresh_format"):
        if data.get(fmt, "json") not in ("json", "form"):
            raise ConfigError(f"{key}.{fmt}: expected json or form")
    redirect = data.get("redirect") or {}
    use = data.get("use") or {}
    try:
        auth = AuthStyle(use.get("auth", "bearer"))
    except ValueError:
        raise ConfigError(f"{key}.use.auth: expected one of {', '.join(s.value for s in AuthStyle)}") from None
    port = redirect.get("loopback_port")
    other = data.get("other_clients", "send")
    if other not in OTHER_CLIENTS:
        raise ConfigError(f"{key}.other_clients: expected refuse (the login serves its own client's requests "
                          "only) or send (other clients' requests go on it as they are)")
    if data.get("refresh_scope") not in ("granted", None):
        raise ConfigError(f"{key}.refresh_scope: expected granted (a refresh asks for the scopes the login got) "
                          "or null")
    return Flow(
        name=name, title=str(data.get("title", name)), provider=data["provider"], upstream=data["upstream"],
        authorize_url=data.get("authorize_url") or None, token_url=data["token_url"],
        token_format=data.get("token_format", "json"), refresh_format=data.get("refresh_format", "json"),
        client_id=data["client_id"], client_secret=data.get("client_secret"),
        scopes=tuple(data.get("scopes") or ()),
        authorize_params={str(k): str(v) for k, v in (data.get("authorize_params") or {}).items()},
        use=Usage(auth=auth, headers={k.lower(): str(v) for k, v in (use.get("headers") or {}).items()},
                  merge_headers={k.lower(): str(v) for k, v in (use.get("merge_headers") or {}).items()},
                  account_header=use.get("account_header"),
                  windows=_windows(use.get("windows"), f"{key}.use.windows")),
        hosted_redirect=redirect.get("hosted"),
        loopback_port=int(port) if port is not None else None,
        loopback_path=redirect.get("loopback_path", "/callback"),
        create_api_key_url=data.get("create_api_key_url"), userinfo_url=data.get("userinfo_url"),
        code_assist_url=data.get("code_assist_url"), project=data.get("project") or None,
        refresh_params={str(k): str(v) for k, v in (data.get("refresh_params") or {}).items()},
        refusals={str(k): str(v) for k, v in mapping(data.get("refusals") or {}, f"{key}.refusals").items()},
        device=device, refresh_scope=data.get("refresh_scope") == "granted",
        own_client=_own_client(data.get("own_client"), key), other_clients=other,
        exchange_url=data.get("exchange_url") or None, quota_url=data.get("quota_url") or None,
    )


def _own_client(raw: Any, key: str) -> OwnClient | None:
    if raw is None:
        return None
    section = mapping(raw, f"{key}.own_client")
    reject_unknown(section, f"{key}.own_client", {"name", "system_starts"})
    return OwnClient(string(section.get("name"), f"{key}.own_client.name"),
                     string(section.get("system_starts"), f"{key}.own_client.system_starts"),
                     f"{key}.other_clients")
