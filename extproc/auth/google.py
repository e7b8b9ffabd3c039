"""Google Cloud access tokens for Vertex AI credentials (`Credential.google`): google-auth's credentials (a service
account's key file, or application default credentials) refreshed ahead of expiry, in a thread (google-auth is
synchronous), once across workers and replicas (the token is shared through a store like the logins'). Every other
credential's secret comes from the source it wraps. A token is never logged."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

import google.auth
import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from extproc.auth.accounts import AHEAD_RETRY, ROUTE_MARGIN, TokenState, next_state
from extproc.auth.store import Account, AccountStore, RefreshLockBusy, StoreError
from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import SecretSource
from extproc.core.settings import Credential, GoogleAuth
from extproc.core.windows import WindowState

log = logging.getLogger("extproc.auth")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_UNKNOWN_LIFETIME = 300.0  # a token google-auth gave no expiry for: refreshed this soon
KIND = "google"  # a shared token's kind in the store (a store of its own: never listed as a login)


@dataclass(slots=True)
class _Held:
    """One Google credential's token as this process knows it, and its refresh in flight."""

    credential_id: str  # how messages name it (the first credential seen with these Google credentials)
    token: str = field(default="", repr=False)
    expires_at: float = 0.0
    state: TokenState = TokenState.TRUSTED
    refreshing: asyncio.Task[str] | None = None
    ahead_retry: float = 0.0  # a refresh ahead of expiry failed: not tried again before this


class InnerSecrets(SecretSource, Protocol):
    """Every other credential's secret, and the logins' tokens for fast routes (the account manager)."""

    def route_token(self, credential: Credential) -> str | None: ...

    def watch_tokens(self, callback: Callable[[], None]) -> None: ...


def token_id(auth: GoogleAuth) -> str:
    """The shared token's id in the store: the same Google credentials name the same token on every replica."""
    source = f"file:{auth.file}" if auth.file is not None else "application-default"
    return "google-" + hashlib.sha256(source.encode()).hexdigest()[:16]


class GoogleTokens:
    """A SecretSource: Vertex AI credentials' access tokens, every other secret from `inner`.

    One token per Google credentials across workers and replicas: it is fetched under the store's refresh lock
    (the file's beside the logins, or Redis's with `state.redis`, encrypted there) and written to the store, so
    the other processes adopt it instead of fetching their own. It is refreshed `skew` ahead of its expiry, with
    no request asking (`watch`), and a token an upstream refused is refreshed once, as a login's (TokenState)."""

    def __init__(self, inner: InnerSecrets, store: AccountStore | None = None, verify: ssl.SSLContext | bool = True,
                 skew: float = 300.0, clock: Callable[[], float] = time.time,
                 fetch: Callable[[GoogleAuth, ssl.SSLContext | bool], tuple[str, float | None]] | None = None) -> None:
        self._inner, self._store, self._verify, self._skew, self._clock = inner, store, verify, skew, clock
        self._fetch_token = fetch or fetch_token
        self._held: dict[GoogleAuth, _Held] = {}
        self._watchers: list[Callable[[], None]] = []
        self._stamp: object = None  # the store as last read (None: read it at the next look)

    # -- the request path (a core.secrets.SecretSource)

    async def secret(self, credential: Credential) -> str:
        auth = credential.google
        if auth is None:
            return await self._inner.secret(credential)
        held = self._hold(credential.id, auth)
        left = held.expires_at - self._clock()
        if held.token and held.state is not TokenState.REFUSED and left > min(60.0, self._skew):
            if left <= self._skew:
                self._refresh_ahead(auth, held)  # no request waits on it
            return held.token
        try:
            return await asyncio.shield(self._refresh(auth, held))
        except CredentialUnavailable:
            raise
        except Exception as exc:  # the refresh failed in an unforeseen way: still never sent without a token
            raise CredentialUnavailable(f"no Google access token for {held.credential_id}: {type(exc).__name__}",
                                        permanent=False) from None

    def invalidate(self, credential: Credential) -> bool:
        """Vertex refused the token (401): refresh it before its next use. False when a token fresh from such a
        refresh was refused again: refreshing more would loop, and health suspends the credential instead."""
        if credential.google is None:
            return self._inner.invalidate(credential)
        held = self._held.get(credential.google)
        return held is not None and self._event(held, "refused") is TokenState.REFUSED

    def confirm(self, credential: Credential) -> None:
        if credential.google is None:
            self._inner.confirm(credential)
        elif (held := self._held.get(credential.google)) is not None:
            self._event(held, "accepted")

    def awaits_confirmation(self, credential: Credential) -> bool:
        if credential.google is None:
            return self._inner.awaits_confirmation(credential)
        held = self._held.get(credential.google)
        return held is not None and held.state is TokenState.RETRIED

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        if credential.google is None:
            self._inner.note_windows(credential, state)

    # -- the fast path's tokens (a fast.publisher.LoginTokens)

    def route_token(self, credential: Credential) -> str | None:
        """The token a fast route may carry now: trusted and ROUTE_MARGIN from its expiry at least, else None
        (the full path fetches one). Never fetches: a token another process fetched is adopted by `watch`."""
        if credential.google is None:
            return self._inner.route_token(credential)
        held = self._hold(credential.id, credential.google)
        if not held.token or held.state is not TokenState.TRUSTED \
                or held.expires_at - ROUTE_MARGIN <= self._clock():
            return None
        return held.token

    def watch_tokens(self, callback: Callable[[], None]) -> None:
        """`callback` runs (on the loop) whenever a token a route may carry may have changed."""
        self._watchers.append(callback)
        self._inner.watch_tokens(callback)

    async def watch(self, every: float = 2.0) -> None:
        """Adopt the tokens other processes wrote to the store, and refresh those within the skew of their
        expiry with no request asking (one refresh across processes: the store's lock)."""
        while True:
            try:
                await self.look()
            except Exception as exc:  # the store is unreachable: the tokens held serve on, refreshed here
                log.warning("Google tokens: the shared store could not be read (%s)", type(exc).__name__)
            await asyncio.sleep(every)

    async def look(self) -> None:
        """One look: the store's tokens adopted, the due ones refreshed."""
        if self._store is not None and self._held:
            stamp = await asyncio.to_thread(self._store.stamp)
            if stamp != self._stamp or stamp is None:
                stored = {a.id: a for a in await asyncio.to_thread(self._store.load)}
                self._stamp = stamp
                for auth, held in self._held.items():
                    found = stored.get(token_id(auth))
                    if found is not None and found.access_token and found.expires_at is not None:
                        self._adopt(held, found.access_token, found.expires_at)
        now = self._clock()
        due = [self._refresh_ahead(auth, held) for auth, held in list(self._held.items())
               if held.token and now < held.expires_at <= now + self._skew]
        flying = [task for task in due if task is not None]
        if flying:  # waited for (never cancelled with this look): one look at a time
            await asyncio.wait(flying)

    # -- inside

    def _hold(self, credential_id: str, auth: GoogleAuth) -> _Held:
        held = self._held.get(auth)
        if held is None:
            held = self._held[auth] = _Held(credential_id)
            self._stamp = None  # new credentials: the next look reads what the store holds for them
        return held

    def _refresh(self, auth: GoogleAuth, held: _Held) -> asyncio.Task[str]:
        """The one refresh in flight in this process for these credentials (started if none is)."""
        if held.refreshing is None or held.refreshing.done():
            held.refreshing = asyncio.get_running_loop().create_task(self._renew(auth, held))
            held.refreshing.add_done_callback(_retrieved)
        return held.refreshing

    def _refresh_ahead(self, auth: GoogleAuth, held: _Held) -> asyncio.Task[str] | None:
        """Refreshed in the background while the token serves (the refresh in flight, or None while a failed one
        waits out AHEAD_RETRY)."""
        if held.refreshing is not None and not held.refreshing.done():
            return held.refreshing
        if self._clock() < held.ahead_retry:
            return None

        def done(task: asyncio.Task[str]) -> None:
            failed = not task.cancelled() and task.exception() is not None
            held.ahead_retry = self._clock() + AHEAD_RETRY if failed else 0.0

        task = self._refresh(auth, held)
        task.add_done_callback(done)
        return task

    async def _renew(self, auth: GoogleAuth, held: _Held) -> str:
        refused = held.token if held.state is TokenState.REFUSED else ""
        try:
            token, expires_at, fetched = await asyncio.to_thread(self._shared, auth, refused)
        except RefreshLockBusy:
            raise CredentialUnavailable(f"no Google access token for {held.credential_id} yet: another process "
                                        "is fetching it", permanent=False) from None
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            reason = f"no Google access token for {held.credential_id}: {_said(exc)}"
            log.warning("%s", reason)
            raise CredentialUnavailable(reason, permanent=False) from None
        if fetched:
            self._event(held, "refreshed")
            self._set(held, token, expires_at)
            log.info("%s: Google access token refreshed, good for %.0f s", held.credential_id,
                     expires_at - self._clock())
        else:
            self._adopt(held, token, expires_at)
        return token

    def _shared(self, auth: GoogleAuth, refused: str) -> tuple[str, float, bool]:
        """(token, expiry, fetched here): the store's token when another process fetched one that serves, else a
        new one from Google, written to the store. Under the store's lock, so one process fetches. Blocking."""
        if self._store is None:
            return (*self._fetch(auth), True)
        key = token_id(auth)
        lock = self._store.refresh_lock(key)
        try:
            lock.__enter__()
        except RefreshLockBusy:
            raise
        except (StoreError, OSError) as exc:  # the store is away: this process fetches its own meanwhile
            log.warning("Google tokens: the shared store is unusable (%s); fetching this process's own",
                        type(exc).__name__)
            return (*self._fetch(auth), True)
        try:
            try:
                stored = self._store.get(key)
            except (StoreError, OSError) as exc:
                log.warning("Google tokens: the shared store is unusable (%s)", type(exc).__name__)
                stored = None
            if stored is not None and stored.access_token and stored.access_token != refused \
                    and stored.expires_at is not None and stored.expires_at - self._skew > self._clock():
                return stored.access_token, stored.expires_at, False
            token, expires_at = self._fetch(auth)
            try:
                self._store.upsert(Account(id=key, kind=KIND, access_token=token, expires_at=expires_at))
            except (StoreError, OSError) as exc:  # this process uses it; the others fetch their own
                log.warning("Google tokens: the new token could not be shared (%s)", type(exc).__name__)
            return token, expires_at, True
        finally:
            lock.__exit__(None, None, None)

    def _fetch(self, auth: GoogleAuth) -> tuple[str, float]:
        token, expiry = self._fetch_token(auth, self._verify)
        return token, expiry if expiry is not None else self._clock() + _UNKNOWN_LIFETIME

    def _adopt(self, held: _Held, token: str, expires_at: float) -> None:
        """Another process's token, when it is not the one held and lasts longer."""
        if token != held.token and expires_at > held.expires_at:
            self._event(held, "adopted")
            self._set(held, token, expires_at)

    def _set(self, held: _Held, token: str, expires_at: float) -> None:
        held.token, held.expires_at = token, expires_at
        self._moved()

    def _event(self, held: _Held, event: str) -> TokenState:
        before, held.state = held.state, next_state(held.state, event)
        if held.state is not before:
            self._moved()
        return held.state

    def _moved(self) -> None:
        for callback in self._watchers:
            callback()


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
