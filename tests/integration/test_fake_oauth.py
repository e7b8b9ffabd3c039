"""The fake OAuth server enforces what it claims: PKCE S256, single-use codes, rotating single-use refresh tokens,
bearer-only identity endpoints. Driven over real HTTP with httpx, as the gateway would."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fake_oauth import OPENAI_AUTH_CLAIM, FakeOAuth, decode_jwt_claims

CLAUDE = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
GOOGLE = "google-installed-app"
CODEX = "app_EMoamEEZ73f0CkXaXp7hrann"
LOOPBACK = "http://localhost:1455/auth/callback"
HOSTED = "https://console.anthropic.com/oauth/code/callback"


@pytest.fixture
def oauth() -> Iterator[FakeOAuth]:
    fake = FakeOAuth(client_secrets={GOOGLE: "installed-app-secret"})
    yield fake
    fake.close()


@pytest.fixture
def http(oauth: FakeOAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oauth.base_url, follow_redirects=False, timeout=5) as client:
        yield client


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(http: httpx.Client, challenge: str, *, client_id: str = CODEX, redirect_uri: str = LOOPBACK,
              path: str = "/oauth/authorize", **extra: str) -> httpx.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": "openid profile email offline_access", "code_challenge": challenge,
              "code_challenge_method": "S256", "state": "st-1", **extra}
    return http.get(path, params=params)


def login_code(http: httpx.Client, challenge: str, **kwargs: str) -> str:
    answer = authorize(http, challenge, **kwargs)
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def exchange(http: httpx.Client, code: str, verifier: str, *, client_id: str = CODEX,
             redirect_uri: str = LOOPBACK, as_json: bool = False, **extra: str) -> httpx.Response:
    body = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": redirect_uri, "client_id": client_id, **extra}
    return http.post("/oauth/token", json=body) if as_json else http.post("/oauth/token", data=body)


def refresh(http: httpx.Client, token: str, client_id: str = CODEX) -> httpx.Response:
    return http.post("/oauth/token", json={"grant_type": "refresh_token", "refresh_token": token,
                                           "client_id": client_id})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- authorize


def test_loopback_redirect_carries_code_and_state_and_records_extras(oauth: FakeOAuth, http: httpx.Client):
    _, challenge = pkce()
    answer = authorize(http, challenge, codex_cli_simplified_flow="true")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LOOPBACK
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"] and query["code"][0]
    assert oauth.authorize_requests[-1]["codex_cli_simplified_flow"] == "true"


@pytest.mark.parametrize("override", [{"code_challenge_method": "plain"}, {"code_challenge": ""},
                                      {"response_type": "token"}, {"client_id": ""}])
def test_authorize_rejects_non_pkce_requests(http: httpx.Client, override: dict[str, str]):
    _, challenge = pkce()
    answer = authorize(http, challenge, **override)
    assert answer.status_code == 400 and answer.text


def test_hosted_redirect_shows_code_hash_state(http: httpx.Client):
    verifier, challenge = pkce()
    answer = authorize(http, challenge, client_id=CLAUDE, redirect_uri=HOSTED, code="true")
    assert answer.status_code == 200
    pasted = answer.headers["x-fake-code"]
    assert pasted in answer.text.splitlines()
    code, state = pasted.split("#")
    assert state == "st-1"
    tokens = exchange(http, code, verifier, client_id=CLAUDE, redirect_uri=HOSTED, as_json=True).json()
    assert tokens["account"]["email_address"] == "user@example.com"
    assert tokens["organization"]["name"] == "Fake Org"


# ---------------------------------------------------------------- code exchange


def test_s256_verified(oauth: FakeOAuth, http: httpx.Client):
    verifier, challenge = pkce()
    code = login_code(http, challenge)
    wrong = exchange(http, code, pkce()[0])
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description": "PKCE verification failed"}
    right = exchange(http, code, verifier)
    assert right.status_code == 200
    tokens = right.json()
    assert tokens["access_token"].startswith("at-") and tokens["refresh_token"].startswith("rt-")
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid profile email offline_access"
    assert oauth.is_valid_access_token(tokens["access_token"])
    assert oauth.latest_access_token == tokens["access_token"]
    assert oauth.token_requests[-1].content_type == "application/x-www-form-urlencoded"
    assert oauth.token_requests[-1].params["code_verifier"] == verifier
    assert verifier not in repr(oauth.token_requests[-1])


def test_code_is_single_use_and_bound(oauth: FakeOAuth, http: httpx.Client):
    verifier, challenge = pkce()
    code = login_code(http, challenge)
    mismatched = exchange(http, code, verifier, redirect_uri="http://localhost:9999/cb")
    assert mismatched.json()["error"] == "invalid_grant"
    assert exchange(http, code, verifier, client_id="someone-else").json()["error"] == "invalid_grant"
    assert exchange(http, code, verifier, as_json=True).status_code == 200
    assert oauth.token_requests[-1].content_type == "application/json"
    again = exchange(http, code, verifier, as_json=True)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "code already used"}
    unknown = exchange(http, "code-nope", verifier)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"


def test_configured_client_secret_must_match(http: httpx.Client):
    google = {"client_id": GOOGLE, "redirect_uri": "http://127.0.0.1:8085/oauth2callback"}
    verifier, challenge = pkce()
    code = login_code(http, challenge, path="/o/oauth2/v2/auth", access_type="offline", **google)
    assert exchange(http, code, verifier, client_secret="wrong", **google).status_code == 401
    ok = exchange(http, code, verifier, client_secret="installed-app-secret", **google)
    assert ok.status_code == 200


def test_id_token_carries_chatgpt_account(oauth: FakeOAuth, http: httpx.Client):
    oauth.chatgpt_account_id = "acct-xyz"
    verifier, challenge = pkce()
    id_token = exchange(http, login_code(http, challenge), verifier).json()["id_token"]
    assert len(id_token.split(".")) == 3
    claims: dict[str, Any] = decode_jwt_claims(id_token)
    assert claims[OPENAI_AUTH_CLAIM] == {"chatgpt_account_id": "acct-xyz", "chatgpt_plan_type": "pro"}
    assert claims["email"] == "user@example.com"


# ---------------------------------------------------------------- refresh


def test_refresh_rotates_and_reuse_is_refused(oauth: FakeOAuth, http: httpx.Client):
    first = oauth.issue_tokens(CODEX)
    second = refresh(http, first["refresh_token"]).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    reused = refresh(http, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json() == {"error": "invalid_grant", "error_description": "refresh_token_reused",
                             "code": "refresh_token_reused"}
    assert refresh(http, second["refresh_token"]).status_code == 200
    assert refresh(http, "rt-unknown").json()["error"] == "invalid_grant"
    assert oauth.refresh_calls == 4


def test_concurrent_refreshes_of_one_token_race(oauth: FakeOAuth, http: httpx.Client):
    oauth.refresh_delay = 0.1
    token = oauth.issue_tokens(CODEX)["refresh_token"]
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(refresh(http, token).status_code)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 400, 400]
    assert oauth.refresh_calls == 3


def test_revoked_refresh_tokens_and_expiry(oauth: FakeOAuth, http: httpx.Client):
    oauth.expires_in = 0
    tokens = oauth.issue_tokens(CODEX)
    assert not oauth.is_valid_access_token(tokens["access_token"])
    assert tokens["access_token"] not in oauth.access_tokens
    oauth.revoke_refresh_tokens()
    revoked = refresh(http, tokens["refresh_token"])
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    assert "code" not in revoked.json()


# ---------------------------------------------------------------- bearer endpoints


def test_create_api_key_needs_valid_bearer(oauth: FakeOAuth, http: httpx.Client):
    path = "/api/oauth/claude_cli/create_api_key"
    assert http.post(path).status_code == 401
    assert http.post(path, headers=bearer("at-forged")).status_code == 401
    token = oauth.issue_tokens(CLAUDE, "org:create_api_key user:profile")["access_token"]
    answer = http.post(path, headers=bearer(token), json={"name": "extproc"})
    assert answer.status_code == 200
    key = answer.json()["raw_key"]
    assert key.startswith("sk-ant-api03-fake-") and oauth.created_api_keys == [key]
    assert [(c.path, c.authorized) for c in oauth.calls] == [(path, False), (path, False), (path, True)]
    assert oauth.calls[-1].body == {"name": "extproc"}


def test_code_assist_before_and_after_onboarding(oauth: FakeOAuth, http: httpx.Client):
    token = oauth.issue_tokens(GOOGLE)["access_token"]
    assert http.get("/oauth2/v2/userinfo").status_code == 401
    assert http.get("/oauth2/v2/userinfo", headers=bearer(token)).json()["email"] == "user@example.com"
    load = {"metadata": {"pluginType": "GEMINI"}}
    assert http.post("/v1internal:loadCodeAssist", json=load).status_code == 401
    before = http.post("/v1internal:loadCodeAssist", headers=bearer(token), json=load).json()
    assert before == {"allowedTiers": [{"id": "free-tier", "isDefault": True}]}
    onboard = http.post("/v1internal:onboardUser", headers=bearer(token), json={"tierId": "free-tier"}).json()
    assert onboard == {"done": True, "response": {"cloudaicompanionProject": {"id": "fake-project-42"}}}
    after = http.post("/v1internal:loadCodeAssist", headers=bearer(token), json=load).json()
    assert after == {"cloudaicompanionProject": "fake-project-42", "currentTier": {"id": "free-tier"}}
    assert [c.path for c in oauth.calls if c.authorized][-2:] == ["/v1internal:onboardUser",
                                                                   "/v1internal:loadCodeAssist"]
    assert oauth.calls[-1].body == load
