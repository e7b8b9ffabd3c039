"""Who may see the console: the admin token, once, makes a session sealed in a cookie.

The session is sealed with Fernet under a key derived (HKDF) from `auth.admin_token`, so every worker and replica
opens a cookie any of them made, and changing the admin token ends every session. It holds when it expires and the
CSRF token every form of the session carries. Nothing in it is a secret of the gateway: it only proves that its
holder knew the admin token.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger("extproc.console")
COOKIE = "extproc_console"
NOTICE_COOKIE = "extproc_console_notice"  # what a form did, shown once by the page it redirects to
NOTICE_LIFETIME = 60  # seconds: the redirect follows at once
PATH = "/console"
LIFETIME = 12 * 3600.0  # seconds a sign-in lasts
_INFO = b"extproc console session v1"


@dataclass(frozen=True, slots=True)
class Session:
    expires: float  # epoch seconds
    csrf: str  # what every form of this session sends back


def session_key(admin_token: str) -> bytes:
    """The Fernet key of the sessions under this admin token (the same in every process that has it)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(admin_token.encode())
    return base64.urlsafe_b64encode(derived)


class Sealer:
    """Seals and opens sessions under one admin token."""

    def __init__(self, admin_token: str) -> None:
        self._fernet = Fernet(session_key(admin_token))

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(orjson.dumps({"exp": session.expires, "csrf": session.csrf})).decode()

    def open(self, sealed: str, now: float) -> Session | None:
        """The session, while it has not expired; None for anything else (forged, another token's, expired)."""
        try:
            doc = orjson.loads(self._fernet.decrypt(sealed.encode()))
            session = Session(float(doc["exp"]), str(doc["csrf"]))
        except (InvalidToken, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if now < session.expires else None

    def seal_notice(self, text: str, now: float) -> str:
        return self._fernet.encrypt_at_time(text.encode(), int(now)).decode()

    def open_notice(self, sealed: str, now: float) -> str | None:
        """The notice a form of this gateway sealed a moment ago; None for anything else."""
        try:
            return self._fernet.decrypt_at_time(sealed.encode(), NOTICE_LIFETIME, int(now)).decode()
        except (InvalidToken, UnicodeDecodeError):
            return None


def new_session(now: float) -> Session:
    return Session(now + LIFETIME, secrets.token_urlsafe(24))


def token_matches(given: str, admin_token: str) -> bool:
    """Compared in constant time (of the token's length)."""
    return hmac.compare_digest(given.encode(), admin_token.encode())


def own_origin(scheme: str, host: str) -> str:
    return f"{scheme}://{host}"


def same_origin(origin: str | None, own: str) -> bool:
    """A form may come from the console's own pages only: an `Origin` another site sends is refused (a browser
    that sends none is judged by the CSRF token alone)."""
    return origin is None or origin == own


def csrf_ok(session: Session, form_csrf: str, origin: str | None, own: str) -> bool:
    """A POST of this session: its form carries the session's token, and it came from the console's origin."""
    return same_origin(origin, own) and hmac.compare_digest(form_csrf.encode(), session.csrf.encode())


# ----------------------------------------------------------------------------------------------- the edge

def scheme_of(request: web.Request) -> str:
    """https when the client's connection to Envoy was (Envoy says so in x-forwarded-proto)."""
    return "https" if request.headers.get("x-forwarded-proto", request.scheme) == "https" else "http"


def origin_of(request: web.Request) -> str:
    return own_origin(scheme_of(request), request.host)


class Gate:
    """Sign-in and sign-out, and the session a request carries; the admin token is read from the current
    settings on every call, so a reload that changes it takes effect at once."""

    def __init__(self, admin_token: Callable[[], str | None], clock: Callable[[], float]) -> None:
        self._admin_token = admin_token
        self._clock = clock
        self._sealers: dict[str, Sealer] = {}

    def enabled(self) -> bool:
        return bool(self._admin_token())

    def _sealer(self) -> Sealer | None:
        token = self._admin_token()
        if not token:
            return None
        if token not in self._sealers:
            self._sealers = {token: Sealer(token)}  # one token at a time: the old sessions end with it
        return self._sealers[token]

    def session(self, request: web.Request) -> Session | None:
        sealer, sealed = self._sealer(), request.cookies.get(COOKIE)
        if sealer is None or not sealed:
            return None
        return sealer.open(sealed, self._clock())

    def sign_in(self, request: web.Request, given: str, response: web.StreamResponse) -> bool:
        """Set the session cookie on `response` when `given` is the admin token."""
        token, sealer = self._admin_token(), self._sealer()
        if not token or sealer is None or not token_matches(given, token):
            log.warning("console: a sign-in with a wrong admin token (from %s)",
                        request.headers.get("x-forwarded-for", request.remote))
            return False
        _set_cookie(request, response, COOKIE, sealer.seal(new_session(self._clock())), int(LIFETIME))
        return True

    @staticmethod
    def sign_out(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path=PATH)

    def leave_notice(self, request: web.Request, response: web.StreamResponse, text: str) -> None:
        """After a form that changed something: the page the browser is sent to says what (sealed, so only this
        gateway's own words are shown), and a reload of that page posts nothing again."""
        sealer = self._sealer()
        if sealer is not None:
            _set_cookie(request, response, NOTICE_COOKIE, sealer.seal_notice(text, self._clock()), NOTICE_LIFETIME)

    def notice(self, request: web.Request) -> str | None:
        """The notice left for this page, if any (`clear_notice` on the page's answer: it is shown once)."""
        sealer, sealed = self._sealer(), request.cookies.get(NOTICE_COOKIE)
        return sealer.open_notice(sealed, self._clock()) if sealer is not None and sealed else None

    @staticmethod
    def clear_notice(request: web.Request, response: web.StreamResponse) -> None:
        if NOTICE_COOKIE in request.cookies:
            response.del_cookie(NOTICE_COOKIE, path=PATH)


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    """A console cookie: sent to the console's pages only, never to script or from another site, and over https
    only when the client's connection to Envoy was."""
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True, samesite="Strict",
                        secure=scheme_of(request) == "https")
