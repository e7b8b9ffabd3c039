"""Logged-in accounts at run time: their credentials for the registry, and fresh tokens on demand.

Refresh is single-flight per account: any number of requests on an expiring token share one call.
Each account's token has one explicit state (TokenState) whose transitions are one table.
A rotated refresh token is written to the store before the new access token is handed out, and a
refused refresh suspends the account (visible in `auth list` and in availability) instead of looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from enum import Enum
from urllib.parse import parse_qs, urlsplit

import httpx

from extproc import metrics
from extproc.auth import device
from extproc.auth.client import Grant, OAuthError, code_assist_project, exchange_code, new_account, refresh_grant
from extproc.auth.copilot import exchange_token
from extproc.auth.pkce import LoginExpired, PendingLogin, PendingLogins, challenge_of, new_login
from extproc.auth.store import Account, AccountNotFound, AccountStore, RefreshLockBusy, StoreError
from extproc.core.errors import CredentialUnavailable
from extproc.core.flows import Flow
from extproc.core.settings import Credential
from extproc.core.windows import WindowState

log = logging.getLogger("extproc.auth")
AHEAD_RETRY = 10.0  # s between two refreshes ahead of expiry when one failed (the token still serves meanwhile)
# s: a token this close to its expiry is no longer handed to Envoy for a fast route (the routes file is rewritten
# within a few seconds; the login's requests then take the full path, which refreshes before use)
ROUTE_MARGIN = 30.0


class TokenState(Enum):
    """Where a login's access token stands with its upstream, as far as this process has seen."""

    TRUSTED = "trusted"  # use it until it nears expiry
    REFUSED = "refused"  # an upstream refused it: refresh before its next use
    RETRIED = "retried"  # fresh from a refresh that a refusal caused, not yet accepted: refused again → suspend


# (state, event) → next state; a pair not listed leaves the state as it is. Events: `refused` (an upstream
# 401), `forced` (a refresh asked for by hand), `refreshed` (this process got a new token), `adopted` (it
# took another process's new token), `accepted` (an upstream took the token).
_TRANSITIONS: dict[tuple[TokenState, str], TokenState] = {
    (TokenState.TRUSTED, "refused"): TokenState.REFUSED,
    (TokenState.TRUSTED, "forced"): TokenState.REFUSED,
    (TokenState.RETRIED, "forced"): TokenState.REFUSED,
    (TokenState.REFUSED, "refreshed"): TokenState.RETRIED,
    (TokenState.REFUSED, "adopted"): TokenState.TRUSTED,
    (TokenState.RETRIED, "accepted"): TokenState.TRUSTED,
}


def next_state(state: TokenState, event: str) -> TokenState:
    return _TRANSITIONS.get((state, event), state)


class LoginError(Exception):
    """A login could not be finished; the message says why and what to do."""


def _rotated(account: Account, grant: Grant) -> Account:
    """The account with a refresh's new pair (a refresh token the grant does not rotate stays)."""
    return dataclasses.replace(account, access_token=grant.access_token,
                               refresh_token=grant.refresh_token or account.refresh_token,
                               expires_at=grant.expires_at, scopes=grant.scope or account.scopes,
                               status="active", status_reason=None)


def login_credential(account: Account, flow: Flow) -> Credential:
    """How the registry and the request path see an account: never its tokens."""
    headers = dict(flow.use.headers)
    if flow.use.account_header and account.account_id:
        headers[flow.use.account_header] = account.account_id
    return Credential(id=account.id, provider=flow.provider, upstream=flow.upstream, account=account.id,
                      auth=flow.use.auth, headers=headers, merge_headers=flow.use.merge_headers,
                      project=account.project_id, windows=flow.use.windows,
                      only_client=flow.own_client if flow.other_clients == "refuse" else None)


def split_pasted(pasted: str) -> tuple[str, str | None]:
    """(code, state) from what a user pastes: `code#state`, a redirect URL, or a bare code."""
    pasted = pasted.strip()
    if pasted.startswith(("http://", "https://")):
        query = parse_qs(urlsplit(pasted).query)
        if "error" in query:
            detail = query.get("error_description", [""])[0]
            why = query["error"][0] + (f" ({detail})" if detail else "")
            raise LoginError(f"the provider refused the login: {why}")
        if "code" not in query:
            raise LoginError("that URL has no ?code=…; paste the address the browser ended on")
        return query["code"][0], query.get("state", [None])[0]
    code, sep, state = pasted.partition("#")
    if not code:
        raise LoginError("nothing before '#': paste the whole code#state the page shows")
    return code, state if sep else None


class AccountManager:
    def __init__(self, store: AccountStore, flows: Mapping[str, Flow], http: httpx.AsyncClient,
                 on_change: Callable[[tuple[Credential, ...], Mapping[str, str], Mapping[str, WindowState]], None]
                 = lambda _c, _s, _w: None,
                 skew: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.flows = flows
        self.pending = PendingLogins(clock)
        self._http = http
        self._on_change = on_change
        self._skew = skew
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, TokenState] = {}  # absent: TRUSTED
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._stamp: object = None
        self._saving: dict[str, asyncio.Task[None]] = {}  # accounts whose windows are being written
        self._unsaved: dict[str, tuple[Account, str | None]] = {}  # refreshed, not yet stored: (new, spent token)
        self._seeking: dict[str, asyncio.Task[None]] = {}  # Gemini logins' project lookups (one per login)
        self._ahead_retry: dict[str, float] = {}  # accounts whose refresh ahead of expiry failed: when to try again
        self._token_watchers: list[Callable[[], None]] = []  # told when a token a route may carry may have moved

    # -- what the rest of the gateway sees

    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def credentials(self) -> tuple[Credential, ...]:
        return tuple(login_credential(a, self.flows[a.kind]) for a in self._accounts.values() if a.kind in self.flows)

    def suspended(self) -> dict[str, str]:
        return {a.id: a.status_reason or "suspended" for a in self._accounts.values() if a.status == "suspended"}

    def windows(self) -> dict[str, WindowState]:
        return {a.id: a.windows for a in self._accounts.values() if a.windows is not None}

    def _changed(self) -> None:
        """Tell the runtime what the accounts are now (credentials, which are suspended why, their windows)."""
        self._on_change(self.credentials(), self.suspended(), self.windows())
        self._tokens_moved()

    # -- tokens for Envoy's fast routes (a fast.logins.LoginTokens)

    def route_token(self, credential: Credential) -> str | None:
        """The secret a fast route may carry for this login now, or None (its requests take the full path): an
        active account's key, or a token this process trusts and that is ROUTE_MARGIN from its expiry at least,
        so a route is withdrawn before its token expires, refreshed or not."""
        account = self._accounts.get(credential.account or "")
        if account is None or account.status == "suspended":
            return None
        if account.api_key:
            return account.api_key
        flow = self.flows.get(account.kind)
        if flow is None or (flow.code_assist_url and not account.project_id):
            return None  # no request goes before Code Assist said whether it serves the login
        if not account.access_token or self.token_state(account.id) is not TokenState.TRUSTED:
            return None  # refused, or fresh from a refusal and not yet taken: the full path refreshes or confirms it
        if account.expires_at is not None and account.expires_at - ROUTE_MARGIN <= self._clock():
            return None
        return account.access_token

    def watch_tokens(self, callback: Callable[[], None]) -> None:
        """`callback` runs (on the loop) whenever a login's token, status or trust may have changed."""
        self._token_watchers.append(callback)

    def _tokens_moved(self) -> None:
        for callback in self._token_watchers:
            callback()

    def refresh_due(self) -> None:
        """Refresh every login whose token is within the refresh skew and not yet expired, with no request asking:
        a token a fast route carries is renewed before it is withdrawn. An expired one is the next request's to
        refresh (it waits for it, as without the fast path). One refresh across processes and replicas (the
        store's lock); the others adopt its result."""
        for account in list(self._accounts.values()):
            if account.status != "suspended" and not account.api_key and account.access_token \
                    and account.refresh_token and account.kind in self.flows and self._expiring(account) \
                    and not self._expired(account):
                self._refresh_ahead(account.id)

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        """Keep a login's windows with its account when they say something new (a level moved by 5 points, a
        reset, an exhaustion): `extproc auth list` shows them, and a restarted gateway knows them again."""
        account = self._accounts.get(credential.account or "")
        if account is None or not state.differs(account.windows):
            return
        at = self._clock()
        self._accounts[account.id] = dataclasses.replace(account, windows=state, windows_at=at)
        if account.id not in self._saving:
            self._saving[account.id] = asyncio.get_running_loop().create_task(self._save_windows(account.id))

    async def _save_windows(self, account_id: str) -> None:
        try:
            current = self._accounts.get(account_id)
            if current is None:
                return
            state, at = current.windows, current.windows_at  # the newest reading, whenever this runs

            def keep(stored: Account) -> Account:  # only the windows: never a token this process may not know
                return dataclasses.replace(stored, windows=state, windows_at=at)

            await asyncio.to_thread(self.store.update, account_id, keep)
        except (StoreError, KeyError) as exc:
            log.debug("account %s: windows not saved (%s)", account_id, exc)
        finally:
            self._saving.pop(account_id, None)

    async def load(self) -> None:
        """Read the store (another process, e.g. `extproc auth login`, may have changed it)."""
        stamp = await self._store_stamp()  # before reading: a write landing meanwhile is reloaded next tick
        accounts = await asyncio.to_thread(self.store.load)
        self._stamp = stamp
        known = set(self._accounts)
        self._accounts = {a.id: a for a in accounts}
        for account in self._accounts.values():
            if account.id not in known:
                log.info("account %s (%s, %s) loaded from the store", account.id, account.kind, account.status)
        self._changed()

    async def watch(self, every: float = 2.0) -> None:
        """Reload when the store changes (another process wrote it); write what could not be written before."""
        self.seek_projects()
        while True:
            await asyncio.sleep(every)
            try:
                await self._save_unsaved()
                if await self._store_stamp() != self._stamp:
                    await self.load()
                    self.seek_projects()
                self.refresh_due()
            except Exception as exc:  # a corrupt or unreachable store is reported; the last good accounts stay
                log.error("accounts store: %s", exc)

    async def _store_stamp(self) -> object:
        try:
            return await asyncio.to_thread(self.store.stamp)
        except StoreError:
            return self._stamp  # unreachable: nothing to reload from yet

    async def _save_unsaved(self) -> None:
        """A refresh made while the store was unreachable: written now, unless the store holds a newer pair
        (another process refreshed since, from the token we spent or after us) — then that one is adopted."""
        for account_id, (ours, spent) in list(self._unsaved.items()):
            def newer(stored: Account, ours: Account = ours, spent: str | None = spent) -> Account:
                if stored.refresh_token in (spent, ours.refresh_token):  # nobody rotated it since we spent it
                    return dataclasses.replace(stored, access_token=ours.access_token,
                                               refresh_token=ours.refresh_token, expires_at=ours.expires_at,
                                               status=ours.status, status_reason=ours.status_reason)
                return stored
            try:
                written = await asyncio.to_thread(self.store.update, account_id, newer)
            except AccountNotFound:  # the store lost it meanwhile (a Redis restarted without persistence)
                written = await asyncio.to_thread(self.store.upsert, ours)
            del self._unsaved[account_id]
            self._adopt(written, event=None)
            log.info("account %s: the refresh made while the store was unreachable is %s", account_id,
                     "saved" if written.refresh_token == ours.refresh_token else "superseded by a newer one")

    # -- secrets for the request path (a core.secrets.SecretSource)

    async def secret(self, credential: Credential) -> str:
        account = self._accounts.get(credential.account or "")
        seeking = self._seek(account) if account is not None else None
        if seeking is not None and not seeking.done():
            await asyncio.shield(seeking)  # no request goes before Code Assist said whether it serves the login
        return await self._secret(credential)

    def seek_projects(self) -> None:
        """Ask Code Assist, in the background, about each Gemini login that has no project yet (the gateway, at
        start and when logins change): one it refuses is suspended before a request reaches it."""
        for account in list(self._accounts.values()):
            self._seek(account)

    def _seek(self, account: Account) -> asyncio.Task[None] | None:
        """The one lookup per process of a Gemini login's Code Assist project (imported, or made before Google
        refused its tier); None for every other login."""
        flow = self.flows.get(account.kind)
        if account.project_id or flow is None or not flow.code_assist_url or account.status != "active":
            return None
        task = self._seeking.get(account.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._seek_project(account.id, flow))
            self._seeking[account.id] = task
        return task

    async def _seek_project(self, account_id: str, flow: Flow) -> None:
        account = self._accounts[account_id]
        try:
            token = await self._secret(login_credential(account, flow))
            project = await code_assist_project(self._http, flow, token)
        except CredentialUnavailable as exc:
            log.warning("%s: no Code Assist project yet (%s)", account_id, exc.reason)
            return
        except OAuthError as exc:
            if exc.permanent:  # Code Assist refuses the account: say what works, once, in `auth list` and errors
                await self._suspend(self._accounts.get(account_id, account), str(exc))
            else:
                log.warning("%s: no Code Assist project yet (%s)", account_id, exc)
            return

        def found(stored: Account) -> Account:
            return dataclasses.replace(stored, project_id=project)

        try:
            self._adopt(await asyncio.to_thread(self.store.update, account_id, found), event=None)
        except (StoreError, KeyError) as exc:
            log.warning("%s: Code Assist project found but not saved (%s)", account_id, exc)
            return
        self._changed()
        log.info("%s: Code Assist project found", account_id)

    async def _secret(self, credential: Credential) -> str:
        if credential.account is None:
            if credential.google is not None:  # fail closed: a Vertex AI credential's token is not ours to give
                raise CredentialUnavailable(f"no Google token source for {credential.id}", permanent=False)
            if credential.entra is not None:  # nor an Azure OpenAI credential's Entra ID token
                raise CredentialUnavailable(f"no Entra ID token source for {credential.id}", permanent=False)
            return credential.secret  # an API key
        account = self._accounts.get(credential.account)
        if account is None:
            raise CredentialUnavailable(f"account {credential.account} was removed", permanent=True)
        if account.status == "suspended":
            raise CredentialUnavailable(f"account {account.id} is suspended: {account.status_reason}", permanent=True)
        if account.api_key:
            return account.api_key
        trusted = self.token_state(account.id) is not TokenState.REFUSED
        if account.access_token and trusted and not self._expired(account):
            if self._expiring(account):
                self._refresh_ahead(account.id)
            return account.access_token  # still good: no request waits on the token endpoint before expiry
        return await self.refresh(account.id)

    def invalidate(self, credential: Credential) -> bool:
        """An upstream refused the token: refresh it before its next use. False when a token fresh from
        such a refresh was refused again — refreshing more would loop; the caller suspends it instead."""
        account = credential.account
        if not account or account not in self._accounts:
            return False
        return self._event(account, "refused") is TokenState.REFUSED

    def confirm(self, credential: Credential) -> None:
        """The upstream took the token: a later refusal deserves a refresh again."""
        if credential.account:
            self._event(credential.account, "accepted")

    def awaits_confirmation(self, credential: Credential) -> bool:
        return credential.account is not None and self.token_state(credential.account) is TokenState.RETRIED

    def token_state(self, account_id: str) -> TokenState:
        return self._tokens.get(account_id, TokenState.TRUSTED)

    def _event(self, account_id: str, event: str) -> TokenState:
        before = self.token_state(account_id)
        state = next_state(before, event)
        self._tokens[account_id] = state
        if state is not before:
            self._tokens_moved()
        return state

    def _expiring(self, account: Account) -> bool:
        return account.expires_at is not None and account.expires_at - self._skew <= self._clock()

    def _expired(self, account: Account) -> bool:
        return account.expires_at is not None and account.expires_at <= self._clock()

    async def refresh(self, account_id: str) -> str:
        """A fresh access token; concurrent callers share one refresh call."""
        return await asyncio.shield(self._flight(account_id))

    def _flight(self, account_id: str) -> asyncio.Task[str]:
        """The account's refresh in flight, started if there is none: one call however many callers."""
        if not self._flying(account_id):
            task = asyncio.create_task(self._refresh(account_id))
            self._inflight[account_id] = task
            task.add_done_callback(lambda ended: self._landed(account_id, ended))
        return self._inflight[account_id]

    def _flying(self, account_id: str) -> bool:
        """A refresh that ended is old news, though its done callback may not have run yet: a caller that came
        after it ended (in the same turn of the loop) gets a refresh of its own, never that one's result."""
        task = self._inflight.get(account_id)
        return task is not None and not task.done()

    def _landed(self, account_id: str, task: asyncio.Task[str]) -> None:
        if self._inflight.get(account_id) is task:  # not a newer flight started meanwhile
            del self._inflight[account_id]

    def _refresh_ahead(self, account_id: str) -> None:
        """A token within the refresh skew is refreshed in the background while it keeps serving: a token
        endpoint that is down or slow costs no request anything until the token really expires. A failed
        refresh is tried again after AHEAD_RETRY, not on every request."""
        if self._flying(account_id) or self._clock() < self._ahead_retry.get(account_id, 0.0):
            return
        self._flight(account_id).add_done_callback(lambda task: self._ahead_done(account_id, task))

    def _ahead_done(self, account_id: str, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here: a background failure is reported once, as a log line
        if exc is None:
            self._ahead_retry.pop(account_id, None)
            return
        self._ahead_retry[account_id] = self._clock() + AHEAD_RETRY
        if isinstance(exc, CredentialUnavailable) and exc.permanent:
            return  # suspended, and logged as such
        reason = exc.reason if isinstance(exc, CredentialUnavailable) else type(exc).__name__
        log.warning("account %s: refreshing ahead of expiry failed (%s); its token serves until it expires, and "
                    "the refresh is tried again in %gs", account_id, reason, AHEAD_RETRY,
                    exc_info=None if isinstance(exc, CredentialUnavailable) else exc)

    async def _refresh(self, account_id: str) -> str:
        """One refresh at a time across processes and replicas (the store's lock): a later one finds the new
        token in the store and adopts it. With the store unreachable, the token this process knows is
        refreshed anyway, kept in memory, and written when the store is back."""
        try:
            await self._save_unsaved()  # a pair refreshed while the store was away goes first
            lock = self.store.refresh_lock(account_id)
            await asyncio.to_thread(lock.__enter__)
        except RefreshLockBusy as exc:  # the store works; another process holds the refresh: wait for it
            raise CredentialUnavailable(f"accounts store: {exc}", permanent=False) from None
        except StoreError as exc:
            return await self._refresh_unlocked(account_id, exc)
        try:
            return await self._refresh_stored(account_id)
        except StoreError as exc:  # the store, not the login, is broken: other credentials carry on
            raise CredentialUnavailable(f"accounts store: {exc}", permanent=False) from None
        finally:
            await asyncio.to_thread(lock.__exit__, None, None, None)

    async def _refresh_unlocked(self, account_id: str, why: StoreError) -> str:
        known = self._accounts.get(account_id)
        flow = self.flows.get(known.kind) if known is not None else None
        if known is None or flow is None or not known.refresh_token:
            raise CredentialUnavailable(f"accounts store: {why}", permanent=False)
        log.warning("account %s: the store is unreachable (%s); refreshing the token this process knows and "
                    "saving it when the store is back", account_id, why)
        try:
            grant = await self._grant(flow, known.refresh_token, known.scopes)
        except OAuthError as exc:
            raise CredentialUnavailable(str(exc), permanent=False) from None
        fresh = dataclasses.replace(_rotated(known, grant), updated_at=self._clock())
        self._unsaved[account_id] = (fresh, known.refresh_token)
        self._event(account_id, "refreshed")
        self._adopt(fresh, event=None)
        return grant.access_token

    async def _refresh_stored(self, account_id: str) -> str:
        stored = await asyncio.to_thread(self.store.get, account_id)
        if stored is None:
            raise CredentialUnavailable(f"account {account_id} was removed", permanent=True)
        if stored.api_key:
            self._adopt(stored)
            return stored.api_key  # a Console login's key does not expire
        known = self._accounts.get(account_id)
        refused = self.token_state(account_id) is TokenState.REFUSED and known is not None \
            and known.access_token == stored.access_token
        if stored.access_token and not self._expiring(stored) and not refused:
            self._adopt(stored)  # another process refreshed it already
            return stored.access_token
        flow = self.flows.get(stored.kind)
        if flow is None or not stored.refresh_token:
            raise await self._suspend(stored, "no refresh token: log in again")
        try:
            grant = await self._grant(flow, stored.refresh_token, stored.scopes)
        except OAuthError as exc:
            if not exc.permanent:
                raise CredentialUnavailable(str(exc), permanent=False) from None
            now_stored = await asyncio.to_thread(self.store.get, account_id)
            if now_stored is not None and now_stored.refresh_token != stored.refresh_token \
                    and now_stored.access_token and now_stored.status == "active":
                self._adopt(now_stored)  # another process refreshed first and spent the token we sent
                return now_stored.access_token
            raise await self._suspend(stored, f"{exc}; log in again") from None

        def rotate(account: Account) -> Account:
            return _rotated(account, grant)

        try:
            updated = await asyncio.to_thread(self.store.update, account_id, rotate)  # persisted before use
        except StoreError as exc:
            # The old refresh token is spent: keep the new pair in memory and write it at the next chance.
            log.error("account %s refreshed but not saved (%s); keeping the new tokens in memory", account_id, exc)
            updated = dataclasses.replace(rotate(stored), updated_at=self._clock())
            self._unsaved[account_id] = (updated, stored.refresh_token)
        self._event(account_id, "refreshed")
        self._adopt(updated, event=None)
        log.info("account %s refreshed", account_id)
        return grant.access_token

    async def _grant(self, flow: Flow, refresh_token: str, scopes: str | None) -> Grant:
        """The token endpoint's answer to a refresh, counted by result in the metrics."""
        try:
            grant = await (exchange_token(self._http, flow, refresh_token) if flow.exchange_url  # Copilot's
                           else refresh_grant(self._http, flow, refresh_token, scopes))
        except OAuthError as exc:
            metrics.TOKEN_REFRESHES.labels("refused" if exc.permanent else "failed").inc()
            raise
        metrics.TOKEN_REFRESHES.labels("ok").inc()
        return grant

    def _adopt(self, account: Account, event: str | None = "adopted") -> None:
        if event is not None:
            self._event(account.id, event)
        before = self._accounts.get(account.id, account)
        self._accounts[account.id] = account
        if before.status != account.status:
            self._changed()
        elif (before.access_token, before.expires_at, before.api_key) != \
                (account.access_token, account.expires_at, account.api_key):
            self._tokens_moved()

    async def _suspend(self, account: Account, reason: str) -> CredentialUnavailable:
        log.warning("account %s suspended: %s", account.id, reason)

        def suspend(a: Account) -> Account:
            return dataclasses.replace(a, status="suspended", status_reason=reason)

        with contextlib.suppress(KeyError):
            account = await asyncio.to_thread(self.store.update, account.id, suspend)
        self._accounts[account.id] = dataclasses.replace(account, status="suspended", status_reason=reason)
        self._changed()
        return CredentialUnavailable(f"account {account.id} suspended: {reason}", permanent=True)

    # -- logging in and out

    def start_login(self, flow_name: str, redirect_uri: str | None = None) -> tuple[PendingLogin, str]:
        """A login this process keeps until its code comes back (`finish_login`)."""
        pending, url = self.begin_login(flow_name, redirect_uri)
        self.pending.keep(pending)
        return pending, url

    def begin_login(self, flow_name: str, redirect_uri: str | None = None) -> tuple[PendingLogin, str]:
        """A login and its authorize link, kept nowhere: the caller holds it (sealed) until `finish_pending`."""
        flow = self.flow(flow_name)
        if flow.authorize_url is None:
            raise LoginError(f"{flow_name} logs in by device code only: `extproc auth login {flow_name}` or "
                             f"POST /auth/logins/{flow_name}/device")
        redirect = redirect_uri or flow.hosted_redirect
        if not redirect:
            raise LoginError(f"{flow_name} has no hosted code page; give the loopback redirect URI")
        pending = new_login(flow.name, redirect, self._clock())
        return pending, flow.authorize_link(redirect, pending.state, challenge_of(pending.verifier))

    async def finish_login(self, code: str, state: str, login: str | None = None) -> Account:
        try:
            pending = self.pending.take(state)
        except LoginExpired:
            raise LoginExpired("the pasted state matches no login in progress (it is from another login, already "
                               "used, or older than ten minutes); start the login again and paste its code") from None
        if login is not None and login != pending.flow:
            raise LoginError(f"this state belongs to a {pending.flow} login, not {login}")
        return await self.finish_pending(pending, code)

    async def finish_pending(self, pending: PendingLogin, code: str) -> Account:
        """Exchange a login's code with its verifier; the account is kept like any login's."""
        flow = self.flow(pending.flow)
        try:
            grant = await exchange_code(self._http, flow, code, pending.verifier, pending.redirect_uri,
                                        pending.state)
        except OAuthError as exc:
            raise LoginError(str(exc)) from None
        return await self._logged_in(flow, grant, "")

    async def _logged_in(self, flow: Flow, grant: Grant, how: str) -> Account:
        """A login's grant made an account (what it needs beyond tokens found) and kept."""
        try:
            account = await new_account(self._http, flow, grant)
        except OAuthError as exc:
            raise LoginError(str(exc)) from None
        stored = await self._keep(account)
        log.info("account %s logged in%s (%s)", stored.id, how, flow.title)
        return stored

    async def start_device_login(self, flow_name: str) -> device.DeviceCode:
        try:
            return await device.start(self._http, self.flow(flow_name), self._clock())
        except OAuthError as exc:
            raise LoginError(str(exc)) from None

    async def poll_device_login(self, code: device.DeviceCode) -> device.Waiting | device.Ended | Account:
        """One poll of a device login; once approved, its account is kept like any login's."""
        flow = self.flow(code.flow)
        try:
            result = await device.poll(self._http, flow, code, self._clock())
        except OAuthError as exc:
            raise LoginError(str(exc)) from None
        return await self._logged_in(flow, result, " by device code") if isinstance(result, Grant) else result

    async def add_imported(self, account: Account) -> Account:
        """Store a login imported from another tool's file, replacing an earlier import of the same login."""
        flow = self.flow(account.kind)
        if flow.code_assist_url and not account.project_id and account.access_token:
            try:
                account = dataclasses.replace(account, project_id=await code_assist_project(
                    self._http, flow, account.access_token))
            except OAuthError as exc:
                if exc.permanent:  # Code Assist will not serve this account: importing it would only fail later
                    raise LoginError(str(exc)) from None
                log.warning("%s: no Code Assist project yet (%s); its requests fail until one is found",
                            account.id, exc)
        for existing in await asyncio.to_thread(self.store.load):
            same_login = existing.refresh_token == account.refresh_token or (
                account.email is not None and existing.email == account.email)
            if existing.kind == account.kind and same_login:
                account = dataclasses.replace(account, id=existing.id)
        return await self._keep(account)

    async def _keep(self, account: Account) -> Account:
        """Write an account, and know that this process made the store's latest change."""
        stored = await asyncio.to_thread(self.store.upsert, account)
        self._accounts[stored.id] = stored
        self._stamp = await self._store_stamp()
        self._changed()
        return stored

    async def remove(self, account_id: str) -> bool:
        removed = await asyncio.to_thread(self.store.remove, account_id)
        self._tokens.pop(account_id, None)
        if self._accounts.pop(account_id, None) is not None or removed:
            self._stamp = await self._store_stamp()
            self._changed()
        return removed

    async def force_refresh(self, account_id: str) -> Account:
        if account_id not in self._accounts:
            raise LoginError(f"no account {account_id}; `extproc auth list` shows the accounts")
        self._event(account_id, "forced")
        await self.refresh(account_id)
        return self._accounts[account_id]

    def flow(self, name: str) -> Flow:
        if name not in self.flows:
            raise LoginError(f"unknown login {name!r}; expected one of {', '.join(self.flows)}")
        return self.flows[name]
