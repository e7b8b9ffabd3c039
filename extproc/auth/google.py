"""Google Cloud access tokens for Vertex AI credentials (`Credential.google`): google-auth's credentials (a service
account's key file, or application default credentials) refreshed ahead of expiry, in a thread (google-auth is
synchronous). Every other credential's secret comes from the source it wraps. A token is never logged."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import SecretSource
from extproc.core.settings import Credential, GoogleAuth
from extproc.core.windows import WindowState

log = logging.getLogger("extproc.auth")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_UNKNOWN_LIFETIME = 300.0  # a token google-auth gave no expiry for: refreshed this soon


@dataclass(slots=True)
class _Held:
    """One Google credential's current token and its refresh in flight (one per process)."""

    token: str = ""
    expires_at: float = 0.0
    refreshing: asyncio.Task[tuple[str, float]] | None = None


class GoogleTokens:
    """A SecretSource: Vertex AI credentials' access tokens, every other secret from `inner`."""

    def __init__(self, inner: SecretSource, verify: ssl.SSLContext | bool = True, skew: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._inner, self._verify, self._skew, self._clock = inner, verify, skew, clock
        self._held: dict[GoogleAuth, _Held] = {}

    async def secret(self, credential: Credential) -> str:
        auth = credential.google
        if auth is None:
            return await self._inner.secret(credential)
        held = self._held.setdefault(auth, _Held())
        left = held.expires_at - self._clock()
        if held.token and left > min(60.0, self._skew):
            if left <= self._skew:
                self._refresh(credential.id, held, auth)  # ahead of expiry: no request waits on it
            return held.token
        try:
            return (await asyncio.shield(self._refresh(credential.id, held, auth)))[0]
        except CredentialUnavailable:
            raise
        except Exception as exc:  # the refresh failed in an unforeseen way: still never sent without a token
            raise CredentialUnavailable(f"no Google access token for {credential.id}: {type(exc).__name__}",
                                        permanent=False) from None

    def _refresh(self, credential_id: str, held: _Held, auth: GoogleAuth) -> asyncio.Task[tuple[str, float]]:
        """The one refresh in flight for this credential (started if none is)."""
        if held.refreshing is None or held.refreshing.done():
            held.refreshing = asyncio.get_running_loop().create_task(self._fetch(credential_id, held, auth))
            held.refreshing.add_done_callback(_retrieved)
        return held.refreshing

    async def _fetch(self, credential_id: str, held: _Held, auth: GoogleAuth) -> tuple[str, float]:
        try:
            token, expiry = await asyncio.to_thread(fetch_token, auth, self._verify)
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            reason = f"no Google access token for {credential_id}: {_said(exc)}"
            log.warning("%s", reason)
            raise CredentialUnavailable(reason, permanent=False) from None
        held.token, held.expires_at = token, expiry if expiry is not None else self._clock() + _UNKNOWN_LIFETIME
        log.info("%s: Google access token refreshed, good for %.0f s", credential_id,
                 held.expires_at - self._clock())
        return held.token, held.expires_at

    def invalidate(self, credential: Credential) -> bool:
        if credential.google is None:
            return self._inner.invalidate(credential)
        return False  # a refused Google token is health's to suspend; its next token comes at expiry

    def confirm(self, credential: Credential) -> None:
        if credential.google is None:
            self._inner.confirm(credential)

    def awaits_confirmation(self, credential: Credential) -> bool:
        return credential.google is None and self._inner.awaits_confirmation(credential)

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        if credential.google is None:
            self._inner.note_windows(credential, state)


def fetch_token(auth: GoogleAuth, verify: ssl.SSLContext | bool = True) -> tuple[str, float | None]:
    """A fresh access token and when it expires (epoch seconds): google-auth's credentials from the file, or its
    application default ones (GOOGLE_APPLICATION_CREDENTIALS, gcloud's, the metadata server's). Blocking."""
    credentials = _from_file(auth.file) if auth.file is not None else google.auth.default(scopes=[SCOPE])[0]
    with httpx.Client(verify=verify, follow_redirects=False, timeout=30.0) as client:
        credentials.refresh(_Request(client))
    token = credentials.token
    if not token:
        raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
            "the token endpoint answered no access token")
    expiry = credentials.expiry  # naive UTC
    return token, expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else None


def _from_file(file: str) -> Any:
    """A service account's key or a user's ADC file, each by its own loader (the generic one takes any type)."""
    with open(file, encoding="utf-8") as found:
        kind = json.load(found).get("type")
    if kind == "service_account":
        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            file, scopes=[SCOPE])
    if kind == "authorized_user":
        return user_credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
            file, scopes=[SCOPE])
    raise ValueError(f"credentials_file holds type {kind!r}, not a service account's key (service_account) or a "
                     "user's (authorized_user); for workload identity, use application default credentials")


def _said(exc: BaseException) -> str:
    """What a google-auth error says, without its payload (a RefreshError's args carry the endpoint's answer)."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return first.splitlines()[0][:200] if first else type(exc).__name__


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A refresh ahead of expiry that failed was logged already; its error needs no other reader."""
    if not task.cancelled():
        task.exception()


class _Response(google.auth.transport.Response):
    def __init__(self, answer: httpx.Response) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return dict(self._answer.headers)

    @property
    def data(self) -> bytes:
        return self._answer.content


class _Request(google.auth.transport.Request):
    """google-auth's transport over httpx (a dependency already; google-auth's own needs requests or urllib3)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> _Response:
        try:
            answer = self._client.request(method, url, content=body, headers=headers,
                                          timeout=timeout if timeout is not None else 30.0)
        except httpx.HTTPError as exc:
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{type(exc).__name__} reaching {url}") from None
        return _Response(answer)
