"""The pure parts of logins: PKCE, states, pasted codes, login files, and what a login adds to a request."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json

import httpx
import pytest

from extproc.auth.accounts import LoginError, split_pasted
from extproc.auth.client import OAuthError, refresh_grant
from extproc.auth.imports import LoginFileError, parse_login_file
from extproc.auth.pkce import STATE_TTL, LoginExpired, PendingLogins, challenge_of, new_verifier
from extproc.config import load_settings
from extproc.request.mutation import merge_header_values
from extproc.request.transforms import SseUnwrapper, unwrap_codeassist
from tests.clock import Clock


def test_verifier_and_s256_challenge_follow_rfc_7636() -> None:
    verifier = new_verifier()
    assert 43 <= len(verifier) <= 128 and set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge_of(verifier) == expected
    # RFC 7636 appendix B's example
    assert challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_states_are_random_single_use_and_expire() -> None:
    clock = Clock(1000.0)
    pending = PendingLogins(clock)
    a, b = pending.start("claude", "https://r"), pending.start("claude", "https://r")
    assert a.state != b.state and a.verifier != b.verifier and a.verifier not in repr(a)
    assert pending.take(a.state) == a
    with pytest.raises(LoginExpired):
        pending.take(a.state)  # single use
    clock.now += STATE_TTL + 1
    with pytest.raises(LoginExpired):
        pending.take(b.state)  # expired
    with pytest.raises(LoginExpired):
        pending.take("made-up")


@pytest.mark.parametrize(("pasted", "expected"), [
    ("abc#xyz", ("abc", "xyz")),
    ("  abc#xyz\n", ("abc", "xyz")),
    ("abc", ("abc", None)),
    ("http://localhost:1455/auth/callback?code=abc&state=xyz", ("abc", "xyz")),
])
def test_split_pasted(pasted: str, expected: tuple[str, str | None]) -> None:
    assert split_pasted(pasted) == expected


def test_a_pasted_url_without_a_code_is_refused_with_the_providers_reason() -> None:
    with pytest.raises(LoginError, match="no \\?code="):
        split_pasted("http://localhost:1455/auth/callback?state=x")
    with pytest.raises(LoginError, match=r"refused the login: access_denied \(User denied\)"):
        split_pasted("http://localhost:1455/auth/callback?error=access_denied&error_description=User+denied")
    with pytest.raises(LoginError, match="nothing before '#'"):
        split_pasted("#state")


@pytest.mark.parametrize(("kind", "doc", "problem"), [
    ("codex", {"OPENAI_API_KEY": "sk-x"}, "has no tokens"),
    ("gemini", {"access_token": "at-secret"}, "has no refresh_token"),
    ("claude", {"other": {}}, "has no claudeAiOauth"),
])
def test_login_files_that_are_not_logins_are_refused_without_their_tokens(kind: str, doc: dict[str, object],
                                                                           problem: str) -> None:
    with pytest.raises(LoginFileError) as caught:
        parse_login_file(kind, json.dumps(doc).encode(), f"/home/u/{kind}.json")
    assert problem in str(caught.value) and "secret" not in str(caught.value)


def test_not_json_is_refused() -> None:
    with pytest.raises(LoginFileError, match="is not JSON"):
        parse_login_file("claude", b"{oops", "/x.json")


@pytest.mark.parametrize(("client", "ours", "merged"), [
    (None, "oauth-2025-04-20", "oauth-2025-04-20"),
    ("a,b", "oauth-2025-04-20", "a,b,oauth-2025-04-20"),
    ("oauth-2025-04-20, a", "oauth-2025-04-20", "oauth-2025-04-20,a"),
])
def test_merge_header_values(client: str | None, ours: str, merged: str) -> None:
    assert merge_header_values(client, ours) == merged


def test_code_assist_answers_are_unwrapped_whole_and_per_event() -> None:
    assert json.loads(unwrap_codeassist(b'{"response": {"candidates": []}, "traceId": "t"}')) == {"candidates": []}
    assert unwrap_codeassist(b'{"error": {"code": 429}}') == b'{"error": {"code": 429}}'  # errors pass as they are
    events = b"".join(b'data: {"response": {"n": %d}}\r\n\r\n' % i for i in range(4))
    for size in (1, 5, 17, len(events)):
        sse, out = SseUnwrapper(), b""
        chunks = [events[i:i + size] for i in range(0, len(events), size)]
        for i, chunk in enumerate(chunks):
            out += sse.feed(chunk, i == len(chunks) - 1)
        assert out == b"".join(b'data: {"n":%d}\r\n\r\n' % i for i in range(4))


@pytest.mark.parametrize(("status", "body", "permanent"), [
    (400, b'{"error": "invalid_grant", "error_description": "expired"}', True),
    (400, b'{"error": "invalid_grant", "error_description": "refresh_token_reused"}', True),
    (401, b'{"error": {"code": "refresh_token_reused", "message": "x"}}', True),  # OpenAI nests it
    (400, b'{"error": {"type": "invalid_request_error", "message": "x"}}', False),  # a drifted endpoint
    (400, b'{"error": "unsupported_grant_type"}', False),
    (500, b'{"error": "server_error"}', False),
    (503, b"<html>down</html>", False),
])
def test_only_refused_grants_are_permanent(status: int, body: bytes, permanent: bool) -> None:
    flow = dataclasses.replace(load_settings().flows["claude"], token_url="https://oauth.test/v1/oauth/token")
    endpoint = httpx.MockTransport(lambda _request: httpx.Response(status, content=body))

    async def go() -> None:
        async with httpx.AsyncClient(transport=endpoint) as http:
            await refresh_grant(http, flow, "rt-secret-value")

    with pytest.raises(OAuthError) as caught:
        asyncio.run(go())
    assert caught.value.permanent is permanent and "rt-secret-value" not in str(caught.value)
