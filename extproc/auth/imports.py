"""Logins people already have: Codex, Gemini CLI, Claude Code and Copilot credential files → accounts. Pure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from extproc.auth.client import OPENAI_AUTH_CLAIM, jwt_claims
from extproc.auth.store import Account, new_account_id

DEFAULT_PATHS = {
    "codex": Path("~/.codex/auth.json"),
    "gemini": Path("~/.gemini/oauth_creds.json"),
    "claude": Path("~/.claude/.credentials.json"),
    "copilot": Path("~/.config/github-copilot/apps.json"),  # the editors' (older ones: hosts.json, same shape)
}


class LoginFileError(ValueError):
    """The file is not the login file it should be; the message names the file, never a token."""


def parse_login_file(kind: str, text: bytes, where: str) -> Account:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise LoginFileError(f"{where} is not JSON") from None
    if not isinstance(doc, dict):
        raise LoginFileError(f"{where} is not a JSON object")
    parse = {"codex": _codex, "gemini": _gemini, "claude": _claude, "copilot": _copilot}[kind]
    now = time.time()
    account = parse(doc, where)
    return Account(**{**account, "kind": kind, "created_at": now, "updated_at": now,
                      "id": new_account_id(kind, account.get("email"))})


def _need(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise LoginFileError(f"{where} has no {key}")
    return value


def _codex(doc: dict[str, Any], where: str) -> dict[str, Any]:
    tokens = doc.get("tokens")
    if not isinstance(tokens, dict):
        raise LoginFileError(f"{where} has no tokens (log in with the Codex CLI first)")
    access = _need(tokens, "access_token", where)
    claims = jwt_claims(tokens.get("id_token"))
    auth = claims.get(OPENAI_AUTH_CLAIM)
    auth = auth if isinstance(auth, dict) else {}
    exp = jwt_claims(access).get("exp")
    return {"access_token": access, "refresh_token": _need(tokens, "refresh_token", where),
            "email": claims.get("email"), "plan": auth.get("chatgpt_plan_type"),
            "account_id": tokens.get("account_id") or auth.get("chatgpt_account_id"),
            "expires_at": float(exp) if isinstance(exp, int | float) else None}


def _gemini(doc: dict[str, Any], where: str) -> dict[str, Any]:
    expiry = doc.get("expiry_date")
    return {"access_token": _need(doc, "access_token", where), "refresh_token": _need(doc, "refresh_token", where),
            "email": jwt_claims(doc.get("id_token")).get("email"),
            "expires_at": expiry / 1000 if isinstance(expiry, int | float) else None}


def _claude(doc: dict[str, Any], where: str) -> dict[str, Any]:
    oauth = doc.get("claudeAiOauth")
    if not isinstance(oauth, dict):
        raise LoginFileError(f"{where} has no claudeAiOauth login (log in with Claude Code first)")
    expires = oauth.get("expiresAt")
    return {"access_token": _need(oauth, "accessToken", where), "refresh_token": _need(oauth, "refreshToken", where),
            "plan": oauth.get("subscriptionType"), "scopes": _scopes(oauth.get("scopes")),
            "expires_at": expires / 1000 if isinstance(expires, int | float) else None}


def _scopes(value: Any) -> str | None:
    """Claude Code keeps the login's scopes as a list: the refresh asks for them again."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return None


def _copilot(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """An editor's GitHub login for github.com (`github.com:<app id>` in apps.json, `github.com` in hosts.json):
    a GitHub App token Copilot's API does not take as it is, kept as the refresh token its exchange spends
    (`oauth.copilot.exchange_url`)."""
    for host, login in doc.items():
        if host.partition(":")[0] == "github.com" and isinstance(login, dict):
            return {"refresh_token": _need(login, "oauth_token", where)}
    raise LoginFileError(f"{where} has no github.com login (sign in to GitHub Copilot in your editor first)")
