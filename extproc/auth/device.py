"""Device-code logins: the user opens a page on any machine and types a short code there while we poll.

Two styles, as the flow's data says (`oauth.<flow>.device.style`):
- rfc8628 (RFC 8628, e.g. GitHub): the code answer names the page and the code's lifetime; the poll is a token
  request answered `authorization_pending`, `slow_down`, `expired_token` or `access_denied` until the user acted.
- openai (OpenAI's device auth, as the Codex CLI does it): the poll answers 403 or 404 until the user approved,
  then an authorization code with its PKCE verifier, exchanged at the flow's token endpoint.

Starting and each poll are one call each, with plain results; the waiting is the caller's (the terminal's loop,
or an API client polling the gateway), timed by `next_wait`. A device login in progress can be sealed into an
opaque handle (`Sealer`) so that any worker or replica can take the next poll. No error, log line or repr holds
a device code or a token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from cryptography.fernet import InvalidToken

from extproc.auth.client import Grant, OAuthError, _error_code, _json, _number, _unreachable, exchange_code, grant_of
from extproc.auth.sealing import fernet
from extproc.core.flows import Device, Flow

DEFAULT_INTERVAL = 5.0  # s between polls when the code answer names none (RFC 8628 §3.2; OpenAI's too)
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5: each slow_down adds this to the interval
DEFAULT_LIFETIME = 900.0  # s a code lives when the answer does not say (the Codex CLI gives up after 15 minutes)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_PENDING_STATUSES = frozenset({403, 404})  # OpenAI: not approved yet


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """A device login in progress: what the user is shown, and what the poll needs (never shown)."""

    flow: str
    user_code: str
    verification_uri: str
    interval: float  # s between polls, as the provider last asked
    expires_at: float  # unix seconds: the code is dead after this
    device_code: str = field(repr=False)  # RFC 8628 device_code, OpenAI device_auth_id


@dataclass(frozen=True, slots=True)
class Waiting:
    """Not approved yet: poll again after `interval` seconds."""

    interval: float
    slowed: bool = False  # the provider asked to poll less often (the interval grew)
    trouble: str | None = None  # a poll that failed in passing (network, a 5xx): the wait goes on


@dataclass(frozen=True, slots=True)
class Ended:
    """The login cannot finish any more: it has to be started again."""

    reason: str  # expired | denied
    message: str


PollResult = Waiting | Ended | Grant


def device_of(flow: Flow) -> Device:
    if flow.device is None:
        raise OAuthError(f"{flow.name} has no device-code login; log in with the browser or a pasted code",
                         permanent=True)
    return flow.device


# -- timing (pure)


def slowed_interval(interval: float, answered: Any) -> float:
    """RFC 8628 §3.5: a slow_down adds 5 s to the interval, or sets the interval the answer names if longer."""
    return max(interval + SLOW_DOWN_STEP, _number(answered) or 0.0)


def next_wait(code: DeviceCode, now: float) -> float | None:
    """Seconds to wait before the next poll, never past the code's expiry; None once it has expired."""
    left = code.expires_at - now
    return None if left <= 0 else min(code.interval, left)


def waited(code: DeviceCode, result: Waiting) -> DeviceCode:
    """The code with the interval a poll's answer asked for (a slow_down raises it for good)."""
    return code if result.interval == code.interval else replace(code, interval=result.interval)


def expired(code: DeviceCode) -> Ended:
    return Ended("expired", f"the {code.flow} device code expired before the login was approved; start it again")


# -- answers (pure)


def parse_code(flow: Flow, doc: dict[str, Any], now: float) -> DeviceCode:
    """The code endpoint's answer: RFC 8628's {device_code, user_code, verification_uri, expires_in, interval}
    or OpenAI's {device_auth_id, user_code (or usercode), interval (a number or a string)}."""
    device = device_of(flow)
    handle_key = "device_code" if device.style == "rfc8628" else "device_auth_id"
    handle = doc.get(handle_key)
    user_code = doc.get("user_code") or doc.get("usercode")
    page = doc.get("verification_uri") or doc.get("verification_url") or device.verify_url
    if not isinstance(handle, str) or not handle or not isinstance(user_code, str) or not user_code:
        raise OAuthError(f"{flow.name}: the device code answer has no {handle_key} or user_code", permanent=False)
    if not isinstance(page, str) or not page:
        raise OAuthError(f"{flow.name}: the device code answer names no page to open; set "
                         f"oauth.{flow.name}.device.verify_url", permanent=True)
    interval = _number(doc.get("interval"))
    lifetime = _number(doc.get("expires_in"))
    return DeviceCode(flow=flow.name, user_code=user_code, verification_uri=page,
                      interval=interval if interval is not None and interval > 0 else DEFAULT_INTERVAL,
                      expires_at=now + (lifetime if lifetime is not None and lifetime > 0 else DEFAULT_LIFETIME),
                      device_code=handle)


def rfc8628_outcome(flow: Flow, code: DeviceCode, status: int, doc: dict[str, Any], interval: float) -> PollResult:
    """A poll's answer (RFC 8628 §3.5): an error code (GitHub answers them with 200, the RFC with 400), or
    the tokens."""
    error = doc.get("error")
    if error == "authorization_pending":
        return Waiting(interval)
    if error == "slow_down":
        return Waiting(slowed_interval(interval, doc.get("interval")), slowed=True)
    if error == "expired_token":
        return expired(code)
    if error == "access_denied":
        return Ended("denied", f"the {flow.name} login was denied on its page; start it again to retry")
    if error or status != 200:
        why = f"HTTP {status}, {_error_code(doc) or 'no error code'}"
        if status >= 500 or status == 429:
            return Waiting(interval, trouble=f"the token endpoint answered {why}")
        raise OAuthError(f"{flow.name}: the token endpoint refused the device login ({why})", permanent=True)
    return grant_of(flow, doc, "the device login")


def openai_outcome(flow: Flow, status: int, doc: dict[str, Any], interval: float) -> Waiting | tuple[str, str]:
    """A poll's answer: 403/404 while the user has not approved, then (authorization code, code verifier)."""
    if status in _PENDING_STATUSES:
        return Waiting(interval)
    if status >= 500 or status == 429:
        return Waiting(interval, trouble=f"the device login endpoint answered HTTP {status}")
    if status != 200:
        raise OAuthError(f"{flow.name}: the device login endpoint refused the poll (HTTP {status}, "
                         f"{_error_code(doc) or 'no error code'})", permanent=True)
    code, verifier = doc.get("authorization_code"), doc.get("code_verifier")
    if not isinstance(code, str) or not code or not isinstance(verifier, str) or not verifier:
        raise OAuthError(f"{flow.name}: the approved device login came without authorization_code and "
                         "code_verifier", permanent=False)
    return code, verifier


# -- the calls


async def start(http: httpx.AsyncClient, flow: Flow, now: float) -> DeviceCode:
    """Ask for a device code and the user code to type."""
    device = device_of(flow)
    if device.style == "rfc8628":
        params = {"client_id": flow.client_id, **({"scope": " ".join(flow.scopes)} if flow.scopes else {})}
        response = await _post(http, flow, device.code_url, params, form=True, what="asking for a device code")
    else:
        response = await _post(http, flow, device.code_url, {"client_id": flow.client_id}, form=False,
                               what="asking for a device code")
    if response.status_code != 200:
        raise OAuthError(f"{flow.name}: asking for a device code was refused (HTTP {response.status_code}, "
                         f"{_error_code(_json(response)) or 'no error code'})", permanent=False)
    return parse_code(flow, _json(response), now)


async def poll(http: httpx.AsyncClient, flow: Flow, code: DeviceCode, now: float) -> PollResult:
    """One poll: still waiting (and how long to wait next: keep it in the code with `waited`), ended, or the
    login's tokens."""
    device, interval = device_of(flow), code.interval
    if now >= code.expires_at:
        return expired(code)
    if device.style == "rfc8628":
        params = {"client_id": flow.client_id, "device_code": code.device_code, "grant_type": DEVICE_GRANT}
        if flow.client_secret:
            params["client_secret"] = flow.client_secret
        try:
            response = await _post(http, flow, device.poll_url, params, form=True, what="the device login's poll")
        except OAuthError as exc:
            return Waiting(interval, trouble=str(exc))
        return rfc8628_outcome(flow, code, response.status_code, _json(response), interval)
    try:
        response = await _post(http, flow, device.poll_url, {"device_auth_id": code.device_code,
                                                              "user_code": code.user_code},
                               form=False, what="the device login's poll")
    except OAuthError as exc:
        return Waiting(interval, trouble=str(exc))
    outcome = openai_outcome(flow, response.status_code, _json(response), interval)
    if isinstance(outcome, Waiting):
        return outcome
    authorization_code, verifier = outcome
    assert device.redirect_uri is not None  # the config requires it for this style
    return await exchange_code(http, flow, authorization_code, verifier, device.redirect_uri, state="")


async def _post(http: httpx.AsyncClient, flow: Flow, url: str, params: dict[str, str], form: bool,
                what: str) -> httpx.Response:
    try:
        if form:
            return await http.post(url, data=params, headers={"accept": "application/json"}, timeout=30)
        return await http.post(url, json=params, headers={"accept": "application/json"}, timeout=30)
    except httpx.HTTPError as exc:
        raise OAuthError(f"{flow.name}: {what} failed: {_unreachable(url, exc)}", permanent=False) from None


# -- a device login in progress, handed to an API client


class HandleRefused(Exception):
    """A poll's handle is not one this gateway sealed, or it is for another login."""


class Sealer:
    """Seals a device login in progress into the opaque handle an API client polls with, so any worker or
    replica sharing the secret takes the next poll and no process keeps it in memory. The client can read none
    of it: with the device code it could fetch the login's tokens itself."""

    def __init__(self, secret: str) -> None:
        self._fernet = fernet(secret, b"extproc device login")

    def seal(self, code: DeviceCode) -> str:
        doc = {"flow": code.flow, "user_code": code.user_code, "verification_uri": code.verification_uri,
               "interval": code.interval, "expires_at": code.expires_at, "device_code": code.device_code}
        return self._fernet.encrypt(orjson.dumps(doc)).decode()

    def open(self, handle: str, flow: str) -> DeviceCode:
        try:
            doc = orjson.loads(self._fernet.decrypt(handle.encode()))
            code = DeviceCode(flow=str(doc["flow"]), user_code=str(doc["user_code"]),
                              verification_uri=str(doc["verification_uri"]), interval=float(doc["interval"]),
                              expires_at=float(doc["expires_at"]), device_code=str(doc["device_code"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            raise HandleRefused("this id is not a device login this gateway started (or it was changed); "
                                "send the id the start call returned") from None
        if code.flow != flow:
            raise HandleRefused(f"this id belongs to a {code.flow} login, not {flow}")
        return code


def whole_seconds(seconds: float) -> int:
    """A wait as the API tells it: whole seconds, rounded up (never 0 while there is one)."""
    return max(0, math.ceil(seconds))
