"""The OAuth and identity calls: code exchange, refresh, and what each login needs after it.

Every error says what failed without any token in it; `permanent` tells a refused grant (the login
must be redone) from a passing failure (try again later).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from extproc.auth.store import Account, new_account_id
from extproc.core.flows import Flow

_PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "refresh_token_reused",
                               "refresh_token_expired", "refresh_token_invalidated", "invalid_token",
                               "invalid_scope"})
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"
_CODE_ASSIST_METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}


class OAuthError(Exception):
    def __init__(self, message: str, permanent: bool, code: str = "") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code  # the OAuth error code, when the endpoint gave one


@dataclass(frozen=True, slots=True)
class Grant:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None
    id_token: str | None = field(default=None, repr=False)
    email: str | None = None
    scope: str | None = None  # the scopes granted, space-separated, when the answer says


async def exchange_code(http: httpx.AsyncClient, flow: Flow, code: str, verifier: str, redirect_uri: str,
                        state: str) -> Grant:
    params = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
              "client_id": flow.client_id, "code_verifier": verifier}
    if flow.token_format == "json":
        params["state"] = state  # Anthropic's token endpoint wants the state back
    return await _token_call(http, flow, params, flow.token_format, "the code exchange")


async def refresh_grant(http: httpx.AsyncClient, flow: Flow, refresh_token: str, scopes: str | None = None) -> Grant:
    """`scopes`: those the login was granted, asked for again where the flow does so (`refresh_scope`); without
    them the refresh asks for none, which OAuth takes as the scopes granted (RFC 6749 §6)."""
    params = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": flow.client_id,
              **flow.refresh_params}
    if not (flow.refresh_scope and scopes):
        return await _token_call(http, flow, params, flow.refresh_format, "the refresh")
    try:
        return await _token_call(http, flow, {**params, "scope": scopes}, flow.refresh_format, "the refresh")
    except OAuthError as exc:
        if exc.code != "invalid_scope":
            raise
    # A scope the provider dropped since: a refused refresh spends no token, so ask for the grant's own instead.
    return await _token_call(http, flow, params, flow.refresh_format, "the refresh")


async def _token_call(http: httpx.AsyncClient, flow: Flow, params: dict[str, str], fmt: str, what: str) -> Grant:
    if flow.client_secret:
        params["client_secret"] = flow.client_secret
    try:
        if fmt == "json":
            response = await http.post(flow.token_url, json=params, timeout=30)
        else:
            response = await http.post(flow.token_url, data=params, timeout=30)
    except httpx.HTTPError as exc:
        raise OAuthError(f"{flow.name}: {what} failed: {_unreachable(flow.token_url, exc)}", permanent=False) from None
    doc = _json(response)
    if response.status_code != 200:
        code = _error_code(doc)
        permanent = code in _PERMANENT_ERRORS  # anything else (a drifted endpoint, a 5xx) may pass
        hint = ": the login was made under scopes the provider no longer grants" if code == "invalid_scope" else ""
        raise OAuthError(f"{flow.name}: the token endpoint refused {what} (HTTP {response.status_code}, "
                         f"{code or 'no error code'}){hint}", permanent=permanent, code=code)
    return grant_of(flow, doc, what)


def grant_of(flow: Flow, doc: dict[str, Any], what: str) -> Grant:
    """The Grant in a token endpoint's answer (a code exchange, a refresh, a device login's last poll)."""
    access = doc.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError(f"{flow.name}: the token endpoint's answer to {what} has no access_token", permanent=False)
    expires_in = _number(doc.get("expires_in"))
    refresh = doc.get("refresh_token")
    account = doc.get("account")
    email = account.get("email_address") if isinstance(account, dict) else None
    return Grant(access_token=access, refresh_token=refresh if isinstance(refresh, str) else None,
                 expires_at=time.time() + expires_in if expires_in is not None else None,
                 id_token=doc.get("id_token") if isinstance(doc.get("id_token"), str) else None,
                 email=email if isinstance(email, str) else None, scope=_text(doc.get("scope")))


def _unreachable(url: str, exc: httpx.HTTPError) -> str:
    """Where and how a call failed, without the request (its body holds codes and tokens)."""
    where = httpx.URL(url).copy_with(query=None)
    if isinstance(exc, httpx.TimeoutException):
        return f"{where} did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect to {where} (DNS, network or proxy)"
    return f"{where}: {type(exc).__name__}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    """A claim as a string, or None: the store takes only strings there."""
    return value if isinstance(value, str) and value else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _error_code(doc: dict[str, Any]) -> str:
    """The OAuth error code; OpenAI nests it ({"error": {"code": …}}), others put it at the top."""
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        return str(code)
    description = doc.get("error_description")
    if isinstance(description, str) and description in _PERMANENT_ERRORS:
        return description  # e.g. invalid_grant with refresh_token_reused as its description
    if isinstance(doc.get("code"), str) and doc["code"] in _PERMANENT_ERRORS:
        return str(doc["code"])
    return str(error or "")


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The claims of a JWT the token endpoint handed us over TLS (not verified: we only read our own)."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


async def new_account(http: httpx.AsyncClient, flow: Flow, grant: Grant) -> Account:
    """An account from a fresh grant, with what this login needs beyond tokens."""
    now = time.time()
    claims = jwt_claims(grant.id_token)
    email = grant.email or _text(claims.get("email"))
    fields: dict[str, Any] = {"access_token": grant.access_token, "refresh_token": grant.refresh_token,
                              "expires_at": grant.expires_at, "scopes": grant.scope}
    if flow.create_api_key_url:  # Console: the login's purpose is an API key; its tokens are not kept
        fields = {"api_key": await _create_api_key(http, flow, grant.access_token)}
    if flow.userinfo_url and not email:  # a grant that does not say who (Gemini's, GitHub's)
        email = await _identity(http, flow, grant.access_token)
    if flow.code_assist_url:  # Gemini CLI: the Code Assist project
        fields["project_id"] = await code_assist_project(http, flow, grant.access_token)
    auth = claims.get(OPENAI_AUTH_CLAIM)
    if isinstance(auth, dict):  # Codex: the ChatGPT account requests must name
        fields["account_id"] = _text(auth.get("chatgpt_account_id"))
        fields["plan"] = _text(auth.get("chatgpt_plan_type"))
    return Account(id=new_account_id(flow.name, email), kind=flow.name, email=email,
                   created_at=now, updated_at=now, **fields)


async def _create_api_key(http: httpx.AsyncClient, flow: Flow, access_token: str) -> str:
    assert flow.create_api_key_url is not None
    response = await _call(http, flow, "POST", flow.create_api_key_url, access_token, {})
    key = response.get("raw_key")
    if not isinstance(key, str) or not key:
        raise OAuthError(f"{flow.name}: creating the API key returned no key", permanent=False)
    return key


async def _identity(http: httpx.AsyncClient, flow: Flow, access_token: str) -> str | None:
    """Who logged in, from the flow's `userinfo_url` (Google's, GitHub's /user): the email, else the account's
    name (GitHub's `login`, its email being private), so that logging in again replaces the account."""
    if not flow.userinfo_url:
        return None
    user = await _call(http, flow, "GET", flow.userinfo_url, access_token, None)
    return _text(user.get("email")) or _text(user.get("login"))


async def code_assist_project(http: httpx.AsyncClient, flow: Flow, access_token: str) -> str:
    """Found once per login: loadCodeAssist names the project, or onboardUser creates one."""
    base = str(flow.code_assist_url).rstrip("/")
    metadata: dict[str, Any] = {**_CODE_ASSIST_METADATA}
    if flow.project:
        metadata["duetProject"] = flow.project
    loaded = await _call(http, flow, "POST", f"{base}/v1internal:loadCodeAssist", access_token,
                         {"cloudaicompanionProject": flow.project, "metadata": metadata} if flow.project
                         else {"metadata": metadata})
    project = _project_id(loaded.get("cloudaicompanionProject")) or flow.project
    if project:
        return project
    refusal = code_assist_refusal(flow, loaded)
    if refusal:
        raise OAuthError(refusal, permanent=True)
    if loaded.get("currentTier"):  # a paid or Workspace tier: the project is the user's own to name
        raise OAuthError(f"{flow.name}: this account needs its Google Cloud project named: "
                         "set oauth.gemini.project in the config and log in again", permanent=False)
    tiers = loaded.get("allowedTiers") or []
    tier = next((t.get("id") for t in tiers if isinstance(t, dict) and t.get("isDefault")), "legacy-tier")
    for _ in range(30):
        onboarded = await _call(http, flow, "POST", f"{base}/v1internal:onboardUser", access_token,
                                {"tierId": tier, "metadata": metadata})
        if onboarded.get("done"):
            response = onboarded.get("response")
            project = _project_id(response.get("cloudaicompanionProject") if isinstance(response, dict) else None)
            if project:
                return project
            break
        await asyncio.sleep(2)
    raise OAuthError(f"{flow.name}: Code Assist gave no project for this account", permanent=False)


def code_assist_refusal(flow: Flow, loaded: dict[str, Any]) -> str | None:
    """Why Code Assist will not serve this account, when loadCodeAssist lists its tier as ineligible for a reason
    the flow's data explains (`refusals`): Google's words, then what the user can do."""
    for tier in loaded.get("ineligibleTiers") or []:
        code = tier.get("reasonCode") if isinstance(tier, dict) else None
        if isinstance(code, str) and code in flow.refusals:
            said = tier.get("reasonMessage")
            google = f" (Google: {said.strip()})" if isinstance(said, str) and said.strip() else ""
            return f"{flow.name}: Code Assist refuses this account: {code}{google}. {flow.refusals[code]}"
    return None


def _project_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


async def _call(http: httpx.AsyncClient, flow: Flow, method: str, url: str, access_token: str,
                body: dict[str, Any] | None, scheme: str = "Bearer",
                refused: Callable[[httpx.Response], bool] = lambda _: False) -> dict[str, Any]:
    """An API call with the login's token (`scheme`: GitHub's own API takes `token`); `refused` tells a refusal
    the login cannot get past (permanent) from one that passes."""
    try:
        response = await http.request(method, url, json=body, timeout=30,
                                      headers={"authorization": f"{scheme} {access_token}"})
    except httpx.HTTPError as exc:
        raise OAuthError(f"{flow.name}: {method} failed: {_unreachable(url, exc)}", permanent=False) from None
    if response.status_code != 200:
        raise OAuthError(f"{flow.name}: {method} {url} answered HTTP {response.status_code}",
                         permanent=refused(response))
    return _json(response)
