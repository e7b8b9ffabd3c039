"""GitHub's calls for a Copilot login: the token exchange an editor's login needs, and the plan's quotas.

A GitHub token from the device login (the flow's OAuth app) goes to Copilot's API as it is. An editor's login
(a GitHub App token, imported from ~/.config/github-copilot) does not: GitHub exchanges it for a Copilot token
that lasts about half an hour (`oauth.copilot.exchange_url`), so such an account keeps the GitHub token as its
refresh token and exchanges it again as a refresh. Either way, the GitHub token reads the plan's quotas.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from extproc.auth.client import Grant, OAuthError, _call
from extproc.auth.store import Account
from extproc.core.flows import Flow
from extproc.core.windows import WindowLevel, WindowState

# The quotas a plan reports, in the order `auth list` shows them; an unlimited one is left out.
QUOTAS = ("premium_interactions", "chat")
GITHUB_SCHEME = "token"  # how GitHub's own API takes its tokens


def github_token(account: Account, flow: Flow) -> str | None:
    """The account's GitHub token: what an exchange keeps as its refresh token, else what requests carry."""
    if flow.exchange_url and account.refresh_token:
        return account.refresh_token
    return account.access_token


async def exchange_token(http: httpx.AsyncClient, flow: Flow, token: str) -> Grant:
    """A Copilot token for a GitHub token; a refusal the login cannot get past (`refused`) is permanent."""
    assert flow.exchange_url is not None
    doc = await _call(http, flow, "GET", flow.exchange_url, token, None, scheme=GITHUB_SCHEME, refused=refused)
    copilot, expires = doc.get("token"), doc.get("expires_at")
    if not isinstance(copilot, str) or not copilot:
        raise OAuthError(f"{flow.name}: the token exchange answered no token", permanent=False)
    return Grant(access_token=copilot, refresh_token=None,
                 expires_at=float(expires) if isinstance(expires, int | float) else None)


async def read_quota(http: httpx.AsyncClient, flow: Flow, token: str) -> WindowState | None:
    assert flow.quota_url is not None
    return quota_windows(await _call(http, flow, "GET", flow.quota_url, token, None, scheme=GITHUB_SCHEME))


def refused(response: httpx.Response) -> bool:
    """GitHub refuses the token for good with 401, or 403 when the account has no Copilot; a 403 that is a rate
    limit (x-ratelimit-remaining: 0, or a retry-after) passes, as does anything else."""
    if response.status_code == 401:
        return True
    limited = response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    return response.status_code == 403 and not limited


def quota_windows(doc: dict[str, Any]) -> WindowState | None:
    """The plan's limited quotas as windows (used = 1 - percent_remaining/100, reset at quota_reset_date); None
    when every quota is unlimited. Running out of premium requests leaves the base models: only a chat quota
    spent (the free plan's) exhausts the login."""
    snapshots = doc.get("quota_snapshots")
    snapshots = snapshots if isinstance(snapshots, dict) else {}
    resets_at = _date(doc.get("quota_reset_date") or doc.get("quota_reset_date_utc"))
    levels = []
    for name in QUOTAS:
        quota = snapshots.get(name)
        if not isinstance(quota, dict) or quota.get("unlimited") is True:
            continue
        left = quota.get("percent_remaining")
        if isinstance(left, int | float) and not isinstance(left, bool):
            levels.append(WindowLevel(name, max(0.0, 1 - left / 100), resets_at))
    if not levels:
        return None
    chat = next((level for level in levels if level.name == "chat"), None)
    return WindowState(max(level.utilization for level in levels), resets_at,
                       chat is not None and chat.utilization >= 1.0, tuple(levels))


def _date(value: Any) -> float | None:
    """quota_reset_date: a date (midnight UTC) or a full timestamp."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
