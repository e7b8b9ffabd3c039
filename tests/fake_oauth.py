"""A fake OAuth / identity server: one real HTTP server on loopback that plays every endpoint the gateway's
login flows talk to (Claude Pro/Max, Anthropic Console, Gemini CLI / Code Assist, ChatGPT Codex).

It enforces what the real servers enforce and a client could get wrong:
- authorize: response_type=code, PKCE S256 with a non-empty challenge, a client_id and a redirect_uri;
- code exchange: the code is bound to (client_id, redirect_uri, code_challenge, scope), is single-use, and
  BASE64URL(SHA256(code_verifier)) must equal the challenge (RFC 7636); a configured client secret must match;
- refresh: refresh tokens rotate and are single-use; reusing one answers `refresh_token_reused`;
- bearer endpoints (create_api_key, userinfo, GitHub's /user, Code Assist) accept only unexpired access tokens it
  issued;
- device logins, RFC 8628 (GitHub's endpoints): the device_code is bound to its client_id and single-use; a poll
  answers authorization_pending until the test approves, slow_down (the interval grows by 5 s) when polled
  faster than the interval, expired_token after expires_in, access_denied when the test denies; like GitHub,
  it answers these errors with HTTP 200;
- device logins, OpenAI's: the poll needs device_auth_id and user_code and answers 403 until the test approves,
  then the authorization code with its PKCE verifier, once; the code exchange then checks PKCE as above.
  Device logins run on `clock` (settable: a test can move time instead of waiting).

A failed exchange (wrong verifier, wrong redirect_uri, ...) does not burn the code; only a success does.
Nothing here prints or logs a token; `TokenRequest`'s repr shows parameter names, not values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests import secrets_registry
from tests.fakes import Answer, serve_whole

DEVICE_CODE_PATH = "/login/device/code"  # RFC 8628 (GitHub): ask for a device code
DEVICE_TOKEN_PATH = "/login/oauth/access_token"  # RFC 8628 (GitHub): the token endpoint the device polls
OPENAI_USERCODE_PATH = "/api/accounts/deviceauth/usercode"
OPENAI_DEVICE_TOKEN_PATH = "/api/accounts/deviceauth/token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTHORIZE_PATHS = frozenset({"/authorize", "/oauth/authorize", "/o/oauth2/v2/auth"})
TOKEN_PATHS = frozenset({"/token", "/v1/oauth/token", "/oauth/token", DEVICE_TOKEN_PATH})
USERINFO_PATHS = frozenset({"/userinfo", "/oauth2/v2/userinfo", "/v1/userinfo"})
GITHUB_USER_PATH = "/user"  # GitHub's /user: `login`, and `email` only when the user made it public
CREATE_API_KEY_PATH = "/api/oauth/claude_cli/create_api_key"
LOAD_CODE_ASSIST_PATH = "/v1internal:loadCodeAssist"
ONBOARD_USER_PATH = "/v1internal:onboardUser"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"
JWT_KEY = b"fake-oauth-dummy-signing-key"  # HS256 over a public dummy key: the signature proves nothing



def s256(verifier: str) -> str:
    """The RFC 7636 S256 code challenge of a verifier: BASE64URL(SHA256(verifier)) without padding."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (what a client does with an id_token it got over TLS)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequest:
    """One call to the token endpoint: the path, the request's content type and its parsed parameters."""

    path: str
    content_type: str
    params: dict[str, str]

    @property
    def grant_type(self) -> str:
        return self.params.get("grant_type", "")

    def __repr__(self) -> str:  # parameter values are codes, verifiers, secrets and tokens: never show them
        return (f"TokenRequest(path={self.path!r}, content_type={self.content_type!r}, "
                f"grant_type={self.grant_type!r}, params={sorted(self.params)!r})")


@dataclass
class Call:
    """One call to a bearer-protected endpoint (create_api_key, userinfo, Code Assist)."""

    method: str
    path: str
    body: Any  # parsed JSON, None when empty, the text when not JSON
    authorized: bool  # whether the bearer was a valid access token


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    used: bool = False


@dataclass
class _Refresh:
    client_id: str
    scope: str
    state: str = "live"  # live | used | revoked


@dataclass
class DeviceLogin:
    """A device login the fake handed out; the test plays the user with approve_device / deny_device."""

    style: str  # rfc8628 | openai
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    interval: float
    state: str = "pending"  # pending | approved | denied | used
    last_poll: float = 0.0  # the code's issue, until the first poll: the interval counts from there
    polls: int = 0
    answers: list[str] = field(default_factory=list)  # what each poll got: pending, slow_down, expired, …


@dataclass
class _State:
    devices: dict[str, DeviceLogin] = field(default_factory=dict)  # device_code / device_auth_id -> login
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    access: dict[str, float] = field(default_factory=dict)  # token -> expires at (time.time())


class FakeOAuth:
    """Every OAuth / identity endpoint the gateway talks to, on one loopback port (see module docstring).

    Settable at any time: `expires_in`, `email`, `github_login`, `github_email`, `chatgpt_account_id`, `project_id`,
    `project_onboarded`, `refresh_delay`, `client_secrets`.
    """

    def __init__(self, client_secrets: dict[str, str] | None = None, *, expires_in: int = 3600,
                 email: str = "user@example.com", chatgpt_account_id: str = "acct-fake-123",
                 project_id: str = "fake-project-42", refresh_delay: float = 0.0,
                 clock: Callable[[], float] = time.time, device_interval: float = 5.0,
                 device_expires_in: float = 900.0) -> None:
        self.client_secrets: dict[str, str] = dict(client_secrets or {})
        self.expires_in = expires_in
        self.email = email
        self.chatgpt_account_id = chatgpt_account_id
        self.project_id = project_id
        self.project_onboarded = False
        self.github_login = "octocat"  # GitHub's /user
        self.github_email: str | None = None  # private, as GitHub's default
        self.withdrawn_scopes: set[str] = set()  # scopes whose logins' refreshes are refused (invalid_scope)
        self.unsupported_client = False  # Code Assist refuses personal accounts from this client (names no project)
        self.refresh_delay = refresh_delay
        self.clock = clock
        self.device_interval = device_interval
        self.device_expires_in = device_expires_in
        self.refresh_calls = 0
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[TokenRequest] = []
        self.calls: list[Call] = []
        self.created_api_keys: list[str] = []
        self.latest_access_token: str | None = None
        self._state = _State()
        self._lock = threading.Lock()
        self.server = serve_whole(lambda r: self._dispatch(r.method, r.path, r.headers, r.body))
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.device_page = f"{self.base_url}/login/device"  # where a user would type the code
        self.device_redirect_uri = f"{self.base_url}/deviceauth/callback"  # OpenAI's device code exchange

    # ------------------------------------------------------------------ public helpers

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue_tokens(self, client_id: str, scope: str = "") -> dict[str, Any]:
        """A valid token answer minted directly, as if a login had happened (for imported credentials)."""
        with self._lock:
            return self._mint(client_id, scope)

    def is_valid_access_token(self, token: str) -> bool:
        with self._lock:
            expires_at = self._state.access.get(token)
        return expires_at is not None and time.time() < expires_at

    @property
    def access_tokens(self) -> set[str]:
        """The access tokens that are currently valid (issued here and not yet expired)."""
        now = time.time()
        with self._lock:
            return {t for t, expires_at in self._state.access.items() if now < expires_at}

    def issued_secrets(self) -> set[str]:
        """Every access token, refresh token and API key this fake ever handed out (to check none leaks)."""
        with self._lock:
            return set(self._state.access) | set(self._state.refresh) | set(self.created_api_keys) | \
                set(self._state.devices)

    def device_logins(self) -> list[DeviceLogin]:
        with self._lock:
            return list(self._state.devices.values())

    def approve_device(self, user_code: str) -> None:
        """The user typed the code on the page and approved."""
        self._device_by_user_code(user_code).state = "approved"

    def deny_device(self, user_code: str) -> None:
        self._device_by_user_code(user_code).state = "denied"

    def _device_by_user_code(self, user_code: str) -> DeviceLogin:
        with self._lock:
            found = [d for d in self._state.devices.values() if d.user_code == user_code and d.state == "pending"]
        if len(found) != 1:
            raise KeyError(f"no pending device login with user code {user_code!r}")
        return found[0]

    def revoke_refresh_tokens(self) -> None:
        """Every outstanding refresh token becomes invalid (invalid_grant): the user revoked the app."""
        with self._lock:
            for grant in self._state.refresh.values():
                if grant.state == "live":
                    grant.state = "revoked"

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path, _, query = target.partition("?")
        if path in AUTHORIZE_PATHS:
            return self._authorize(query) if method == "GET" else _error(405, "method_not_allowed")
        if path in TOKEN_PATHS:
            return self._token(path, headers, body) if method == "POST" else _error(405, "method_not_allowed")
        if path in (DEVICE_CODE_PATH, OPENAI_USERCODE_PATH, OPENAI_DEVICE_TOKEN_PATH):
            return self._device(path, headers, body) if method == "POST" else _error(405, "method_not_allowed")
        if path in USERINFO_PATHS or path in (GITHUB_USER_PATH, CREATE_API_KEY_PATH, LOAD_CODE_ASSIST_PATH,
                                              ONBOARD_USER_PATH):
            return self._bearer_call(method, path, headers, body)
        return _error(404, "not_found", f"no fake endpoint at {path}")

    # ------------------------------------------------------------------ authorize

    def _authorize(self, query: str) -> Answer:
        params = dict(parse_qsl(query, keep_blank_values=True))
        with self._lock:
            self.authorize_requests.append(params)
        if params.get("response_type") != "code":
            return _text(400, "response_type must be 'code'")
        if params.get("code_challenge_method") != "S256":
            return _text(400, "code_challenge_method must be 'S256'")
        if not params.get("code_challenge"):
            return _text(400, "code_challenge is required")
        if not params.get("client_id"):
            return _text(400, "client_id is required")
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _text(400, "redirect_uri must be an absolute http(s) URL")
        code = "code-" + secrets.token_urlsafe(24)
        secrets_registry.secret("oauth authorization code", code)
        with self._lock:
            self._state.codes[code] = _Code(params["client_id"], redirect_uri, params["code_challenge"],
                                            params.get("scope", ""))
        state = params.get("state", "")
        if parts.hostname not in LOOPBACK_HOSTS:  # a hosted code page: the user copies CODE#STATE
            pasted = f"{code}#{state}"
            page = ("<html><body>\n<p>Authentication code. Paste it into your terminal:</p>\n<pre>\n"
                    f"{pasted}\n</pre>\n</body></html>\n")
            return 200, {"content-type": "text/html; charset=utf-8", "x-fake-code": pasted}, page.encode()
        answer = {"code": code, **({"state": state} if "state" in params else {})}
        location = redirect_uri + ("&" if parts.query else "?") + urlencode(answer)
        return 302, {"location": location}, b""

    # ------------------------------------------------------------------ token

    def _token(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        content_type = headers.get("content-type", "")
        params = _params(content_type, body)
        with self._lock:
            self.token_requests.append(TokenRequest(path, content_type, dict(params or {})))
        if params is None:
            return _error(400, "invalid_request", f"unreadable body for content type {content_type!r}")
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(params)
        if grant_type == "refresh_token":
            return self._refresh(params)
        if grant_type == DEVICE_GRANT:
            return self._device_poll(params)
        return _error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _client_secret_ok(self, params: dict[str, str]) -> bool:
        expected = self.client_secrets.get(params.get("client_id", ""))
        return expected is None or hmac.compare_digest(params.get("client_secret", ""), expected)

    def _exchange_code(self, params: dict[str, str]) -> Answer:
        secrets_registry.secret("pkce verifier", params.get("code_verifier"))  # made by the client under test
        missing = [k for k in ("code", "code_verifier", "redirect_uri", "client_id") if not params.get(k)]
        if missing:
            return _error(400, "invalid_request", f"missing {', '.join(missing)}")
        with self._lock:
            grant = self._state.codes.get(params["code"])
            if grant is None:
                return _error(400, "invalid_grant", "unknown authorization code")
            if grant.used:
                return _error(400, "invalid_grant", "code already used")
            if params["client_id"] != grant.client_id:
                return _error(400, "invalid_grant", "client_id does not match the authorization request")
            if not self._client_secret_ok(params):
                return _error(401, "invalid_client", "client authentication failed")
            if params["redirect_uri"] != grant.redirect_uri:
                return _error(400, "invalid_grant", "redirect_uri does not match the authorization request")
            if not hmac.compare_digest(s256(params["code_verifier"]), grant.code_challenge):
                return _error(400, "invalid_grant", "PKCE verification failed")
            grant.used = True
            return _json(200, self._mint(grant.client_id, grant.scope))

    def _refresh(self, params: dict[str, str]) -> Answer:
        with self._lock:
            self.refresh_calls += 1
            delay = self.refresh_delay
        if delay:
            time.sleep(delay)  # outside the lock: concurrent refreshes of one token pile up here, then race
        missing = [k for k in ("refresh_token", "client_id") if not params.get(k)]
        if missing:
            return _error(400, "invalid_request", f"missing {', '.join(missing)}")
        with self._lock:
            grant = self._state.refresh.get(params["refresh_token"])
            if grant is None:
                return _error(400, "invalid_grant", "unknown refresh token")
            if grant.state == "used":
                return _error(400, "invalid_grant", "refresh_token_reused", code="refresh_token_reused")
            if grant.state == "revoked":
                return _error(400, "invalid_grant", "Token has been expired or revoked.")
            if params["client_id"] != grant.client_id:
                return _error(400, "invalid_grant", "client_id does not match the refresh token")
            if not self._client_secret_ok(params):
                return _error(401, "invalid_client", "client authentication failed")
            if set(grant.scope.split()) & self.withdrawn_scopes:  # the provider no longer grants what this login has
                return _error(400, "invalid_scope", "the login's scope is no longer granted: log in again")
            if grant.scope and not set(params.get("scope", "").split()) <= set(grant.scope.split()):  # RFC 6749 §6
                return _error(400, "invalid_scope", "the requested scope exceeds the scope granted")
            grant.state = "used"
            return _json(200, self._mint(grant.client_id, grant.scope))

    def _mint(self, client_id: str, scope: str) -> dict[str, Any]:
        """A fresh token pair (caller holds the lock)."""
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        expires_in = int(self.expires_in)
        now = time.time()
        self._state.access[access] = now + expires_in
        self._state.refresh[refresh] = _Refresh(client_id, scope)
        self.latest_access_token = access
        id_token = self._id_token(client_id, int(now), expires_in)
        for kind, value in (("oauth access token", access), ("oauth refresh token", refresh),
                            ("oauth id token", id_token)):
            secrets_registry.secret(kind, value)
        return {"access_token": access, "refresh_token": refresh, "expires_in": expires_in, "token_type": "Bearer",
                "scope": scope, "id_token": id_token,
                "account": {"uuid": "fake-account-uuid", "email_address": self.email},
                "organization": {"uuid": "fake-org-uuid", "name": "Fake Org"}}

    def _id_token(self, client_id: str, now: int, expires_in: int) -> str:
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {"iss": self.base_url, "aud": client_id, "sub": "fake-user-1", "iat": now, "exp": now + expires_in,
                  "email": self.email, "email_verified": True,
                  "https://api.openai.com/profile": {"email": self.email, "email_verified": True},
                  OPENAI_AUTH_CLAIM: {"chatgpt_account_id": self.chatgpt_account_id, "chatgpt_plan_type": "pro"}}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = hmac.new(JWT_KEY, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64url(signature)

    # ------------------------------------------------------------------ device logins

    def _device(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        params = _params(headers.get("content-type", ""), body)
        if params is None:
            return _error(400, "invalid_request", "unreadable body")
        if path == OPENAI_DEVICE_TOKEN_PATH:
            return self._openai_device_poll(params)
        if not params.get("client_id"):
            return _error(400, "invalid_request", "missing client_id")
        style = "openai" if path == OPENAI_USERCODE_PATH else "rfc8628"
        if style == "rfc8628" and "application/json" not in headers.get("accept", ""):
            return _text(400, "this fake answers device codes as JSON only: send accept: application/json")
        handle = ("dev-" if style == "rfc8628" else "deviceauth-") + secrets.token_urlsafe(24)
        secrets_registry.secret("device code", handle)
        user_code = f"{secrets.token_hex(2).upper()}-{secrets.token_hex(2).upper()}"
        with self._lock:
            now = self.clock()
            login = DeviceLogin(style, params["client_id"], params.get("scope", ""), user_code,
                                now + self.device_expires_in, self.device_interval, last_poll=now)
            self._state.devices[handle] = login
        if style == "openai":  # OpenAI's answer: no page, no lifetime, the interval as a string
            return _json(200, {"device_auth_id": handle, "user_code": user_code, "interval": str(login.interval)})
        return _json(200, {"device_code": handle, "user_code": user_code, "verification_uri": self.device_page,
                           "expires_in": int(self.device_expires_in), "interval": login.interval})

    def _device_poll(self, params: dict[str, str]) -> Answer:
        """RFC 8628 §3.4-3.5, answered with HTTP 200 as GitHub does."""
        with self._lock:
            login = self._state.devices.get(params.get("device_code", ""))
            if login is None or login.style != "rfc8628":
                return _json(200, {"error": "invalid_grant", "error_description": "unknown device code"})
            now = self.clock()
            answer = self._device_answer(login, params, now)
            login.polls += 1
            login.last_poll = now
            login.answers.append(answer)
            if answer == "tokens":
                login.state = "used"
                minted = self._mint(login.client_id, login.scope)  # GitHub's answer says nothing of who logged in
                return _json(200, {key: minted[key] for key in ("access_token", "token_type", "scope")})
            doc: dict[str, Any] = {"error": answer, "error_description": answer}
            if answer == "slow_down":
                doc["interval"] = login.interval
            return _json(200, doc)

    def _device_answer(self, login: DeviceLogin, params: dict[str, str], now: float) -> str:
        if params.get("client_id") != login.client_id:
            return "incorrect_client_credentials"
        if not self._client_secret_ok(params):
            return "invalid_client"
        if login.state == "used":
            return "invalid_grant"
        if now >= login.expires_at:
            return "expired_token"
        if now - login.last_poll < login.interval:
            login.interval += 5  # RFC 8628 §3.5
            return "slow_down"
        if login.state == "denied":
            return "access_denied"
        return "tokens" if login.state == "approved" else "authorization_pending"

    def _openai_device_poll(self, params: dict[str, str]) -> Answer:
        with self._lock:
            login = self._state.devices.get(params.get("device_auth_id", ""))
            if login is None or login.style != "openai" or params.get("user_code") != login.user_code:
                return _error(404, "not_found", "unknown device authorization")
            now = self.clock()
            login.polls += 1
            login.last_poll = now
            if now >= login.expires_at or login.state == "used":
                login.answers.append("expired")
                return _error(404, "not_found", "unknown device authorization")
            if login.state != "approved":
                login.answers.append("pending")
                return _error(403, "deviceauth_pending", "the user has not approved yet")
            login.state = "used"
            login.answers.append("tokens")
            verifier = "ver-" + secrets.token_urlsafe(48)
            code = "code-" + secrets.token_urlsafe(24)
            secrets_registry.secret("pkce verifier", verifier)
            secrets_registry.secret("oauth authorization code", code)
            self._state.codes[code] = _Code(login.client_id, self.device_redirect_uri, s256(verifier), login.scope)
            return _json(200, {"authorization_code": code, "code_challenge": s256(verifier),
                               "code_verifier": verifier})

    # ------------------------------------------------------------------ bearer endpoints

    def _bearer_call(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        authorized = scheme.lower() == "bearer" and self.is_valid_access_token(token.strip())
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
        with self._lock:
            self.calls.append(Call(method, path, parsed, authorized))
        expected_method = "GET" if path in USERINFO_PATHS or path == GITHUB_USER_PATH else "POST"
        if method != expected_method:
            return _error(405, "method_not_allowed")
        if not authorized:
            return _json(401, {"error": {"code": 401, "type": "authentication_error", "status": "UNAUTHENTICATED",
                                         "message": "missing or invalid bearer token"}})
        if path in USERINFO_PATHS:
            return _json(200, {"email": self.email, "verified_email": True, "id": "fake-user-1"})
        if path == GITHUB_USER_PATH:
            return _json(200, {"login": self.github_login, "id": 583231, "email": self.github_email})
        if path == CREATE_API_KEY_PATH:
            key = "sk-ant-api03-fake-" + secrets.token_urlsafe(24)
            secrets_registry.secret("console api key", key)
            with self._lock:
                self.created_api_keys.append(key)
            return _json(200, {"raw_key": key})
        if path == LOAD_CODE_ASSIST_PATH:
            with self._lock:
                onboarded, project = self.project_onboarded, self.project_id
            if self.unsupported_client and not _asks_for_project(body):  # a personal account, since 2026-06
                return _json(200, {"allowedTiers": [{"id": "standard-tier", "isDefault": False}], "ineligibleTiers": [
                    {"reasonCode": "UNSUPPORTED_CLIENT", "tierId": "free-tier", "tierName": "Gemini Code Assist for "
                     "individuals", "reasonMessage": "This client is no longer supported for Gemini Code Assist for "
                     "individuals."}]})
            if self.unsupported_client:  # a licensed account naming its project
                return _json(200, {"cloudaicompanionProject": project, "currentTier": {"id": "standard-tier"}})
            if onboarded:
                return _json(200, {"cloudaicompanionProject": project, "currentTier": {"id": "free-tier"}})
            return _json(200, {"allowedTiers": [{"id": "free-tier", "isDefault": True}]})
        with self._lock:  # onboardUser
            self.project_onboarded = True
            project = self.project_id
        return _json(200, {"done": True, "response": {"cloudaicompanionProject": {"id": project}}})


def _asks_for_project(body: bytes) -> bool:
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return False
    return isinstance(doc, dict) and bool(doc.get("cloudaicompanionProject"))


def _params(content_type: str, body: bytes) -> dict[str, str] | None:
    """A request's parameters, JSON or form; None when the body does not parse as its content type says."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json":
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return None
        if isinstance(doc, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
        return None
    if media == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return None
    return None


def _json(status: int, doc: dict[str, Any]) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(doc).encode()


def _error(status: int, error: str, description: str = "", code: str | None = None) -> Answer:
    doc: dict[str, Any] = {"error": error, "error_description": description or error}
    if code is not None:
        doc["code"] = code
    return _json(status, doc)


def _text(status: int, message: str) -> Answer:
    return status, {"content-type": "text/plain; charset=utf-8"}, (message + "\n").encode()
