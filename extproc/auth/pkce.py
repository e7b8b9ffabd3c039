"""PKCE (RFC 7636, S256) and the logins waiting for their redirect.

The verifier stays in this process (or, for the web console, sealed in a handle only the gateway can open); only
its challenge goes to the browser. `state` is separate, random, single-use here, and expires: a redirect with an
unknown, used or stale state is refused.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from cryptography.fernet import InvalidToken

from extproc.auth.sealing import fernet

STATE_TTL = 600.0  # ten minutes to finish a login


def new_verifier() -> str:
    """43-128 characters from the unreserved set: 64 random bytes, base64url without padding (86 chars)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class PendingLogin:
    flow: str
    state: str
    verifier: str = field(repr=False)
    redirect_uri: str
    expires_at: float


def new_login(flow: str, redirect_uri: str, now: float) -> PendingLogin:
    """A login's fresh state and verifier, valid for STATE_TTL."""
    return PendingLogin(flow, secrets.token_urlsafe(32), new_verifier(), redirect_uri, now + STATE_TTL)


class LoginExpired(Exception):
    """The state is unknown, already used, or older than ten minutes."""


class PendingLogins:
    """State → login in progress. Taking a login removes it: a state works once."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingLogin] = {}

    def start(self, flow: str, redirect_uri: str) -> PendingLogin:
        return self.keep(new_login(flow, redirect_uri, self._clock()))

    def keep(self, login: PendingLogin) -> PendingLogin:
        now = self._clock()
        with self._lock:
            self._pending = {s: p for s, p in self._pending.items() if p.expires_at > now}
            self._pending[login.state] = login
        return login

    def take(self, state: str) -> PendingLogin:
        with self._lock:
            login = self._pending.pop(state, None)
        if login is None or login.expires_at <= self._clock():
            raise LoginExpired("this login link is unknown, already used or expired; start the login again")
        return login


class LoginSealer:
    """Seals a login in progress into the opaque handle a browser form carries back, so any worker or replica
    sharing the secret finishes it and none keeps it in memory. The browser can read none of it: the verifier is
    what makes a stolen code useless."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._fernet = fernet(secret, b"extproc pkce login")
        self._clock = clock

    def seal(self, login: PendingLogin) -> str:
        doc = {"flow": login.flow, "state": login.state, "verifier": login.verifier,
               "redirect_uri": login.redirect_uri, "expires_at": login.expires_at}
        return self._fernet.encrypt(orjson.dumps(doc)).decode()

    def open(self, handle: str) -> PendingLogin:
        try:
            doc = orjson.loads(self._fernet.decrypt(handle.encode()))
            login = PendingLogin(flow=str(doc["flow"]), state=str(doc["state"]), verifier=str(doc["verifier"]),
                                 redirect_uri=str(doc["redirect_uri"]), expires_at=float(doc["expires_at"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            raise LoginExpired("this login is not one this gateway started (or it was changed); "
                               "start the login again") from None
        if login.expires_at <= self._clock():
            raise LoginExpired("this login is older than ten minutes; start it again")
        return login
