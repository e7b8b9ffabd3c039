"""The console's sessions: sealed under the admin token, expiring, and the CSRF and origin checks of its forms."""

from __future__ import annotations

from extproc.console.session import (
    LIFETIME,
    NOTICE_LIFETIME,
    Sealer,
    Session,
    csrf_ok,
    new_session,
    same_origin,
    session_key,
    token_matches,
)

ADMIN = "admin-token-0123456789abcdef"
T = 1_700_000_000.0


def test_a_sealed_session_opens_under_the_same_token_in_any_process_until_it_expires() -> None:
    session = new_session(T)
    assert session.expires == T + LIFETIME and len(session.csrf) >= 24
    sealed = Sealer(ADMIN).seal(session)
    assert ADMIN not in sealed and session.csrf not in sealed  # sealed, not merely signed
    assert Sealer(ADMIN).open(sealed, T + 1) == session  # another Sealer: another worker or replica
    assert Sealer(ADMIN).open(sealed, T + LIFETIME - 1) == session
    assert Sealer(ADMIN).open(sealed, T + LIFETIME) is None


def test_a_session_made_under_another_token_or_altered_does_not_open() -> None:
    sealed = Sealer(ADMIN).seal(new_session(T))
    assert Sealer(ADMIN + "x").open(sealed, T) is None  # a changed admin token ends every session
    assert Sealer(ADMIN).open(sealed[:-4] + "AAAA", T) is None
    assert Sealer(ADMIN).open("", T) is None and Sealer(ADMIN).open("not a session", T) is None
    assert session_key(ADMIN) == session_key(ADMIN) != session_key(ADMIN + "x")


def test_a_notice_opens_under_the_same_token_for_a_moment_only() -> None:
    sealed = Sealer(ADMIN).seal_notice("Removed claude-1.", T)
    assert "Removed" not in sealed  # the page shows this gateway's own words only, never a cookie's
    assert Sealer(ADMIN).open_notice(sealed, T + NOTICE_LIFETIME - 1) == "Removed claude-1."
    assert Sealer(ADMIN).open_notice(sealed, T + NOTICE_LIFETIME + 1) is None
    assert Sealer(ADMIN + "x").open_notice(sealed, T) is None
    assert Sealer(ADMIN).open_notice("Logged in: evil", T) is None


def test_the_admin_token_must_match_whole() -> None:
    assert token_matches(ADMIN, ADMIN)
    assert not token_matches(ADMIN[:-1], ADMIN) and not token_matches("", ADMIN)
    assert not token_matches(ADMIN + " ", ADMIN)


def test_a_form_needs_the_sessions_csrf_token_and_the_consoles_own_origin() -> None:
    session = Session(T + 60, "csrf-token-abc")
    own = "https://gw.example.com"
    assert csrf_ok(session, "csrf-token-abc", None, own)  # a browser that sends no Origin: the token decides
    assert csrf_ok(session, "csrf-token-abc", own, own)
    assert not csrf_ok(session, "csrf-token-abd", own, own)
    assert not csrf_ok(session, "", own, own)
    assert not csrf_ok(session, "csrf-token-abc", "https://evil.example", own)
    assert not csrf_ok(session, "csrf-token-abc", "http://gw.example.com", own)  # another scheme: another origin
    assert same_origin(None, own) and not same_origin("null", own)
