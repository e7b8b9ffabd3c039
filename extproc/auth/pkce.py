"""PKCE (RFC 7636, S256) and the logins waiting for their redirect.

The verifier stays in this process; only its challenge goes to the browser. `state` is separate,
random, single-use, and expires: a redirect with an unknown, used or stale state is refused.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


class LoginExpired(Exception):
    """The state is unknown, already used, or older than ten minutes."""


class PendingLogins:
    """State → login in progress. Taking a login removes it: a state works once."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingLogin] = {}

    def start(self, flow: str, redirect_uri: str) -> PendingLogin:
        now = self._clock()
        login = PendingLogin(flow, secrets.token_urlsafe(32), new_verifier(), redirect_uri, now + STATE_TTL)
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
