"""Logins' plan quotas (Copilot's), read off the request path into their windows.

Copilot's answers say nothing of the plan's monthly quotas; GitHub tells them at the flow's `quota_url`. Each
login that has one is read as soon as the gateway knows it (a login, an import, a restart), then every
QUOTA_EVERY seconds, by one worker of each replica (the runner starts the reader in worker 0 only); a login whose
stored windows (the account store, which replicas share through state.redis) are newer than that is left to
whoever read them. What it says goes where an answer's windows go: health (a spent quota cools the login, a nearly
spent one serves last), the account (`extproc auth list`, other replicas, a later start), the Models API and the
metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import httpx

from extproc.auth.accounts import AccountManager, login_credential
from extproc.auth.client import OAuthError
from extproc.auth.copilot import github_token, read_quota
from extproc.auth.store import Account
from extproc.core.flows import Flow
from extproc.request.learning import learn_windows
from extproc.runtime import Runtime

log = logging.getLogger("extproc.auth")
QUOTA_EVERY = 300.0  # seconds between two readings of one login's quota
TICK = 2.0  # how often a new login is looked for


class QuotaReader:
    def __init__(self, runtime: Runtime, manager: AccountManager, http: httpx.AsyncClient,
                 clock: Callable[[], float] = time.time) -> None:
        self._runtime, self._manager, self._http, self._clock = runtime, manager, http, clock
        self._read_at: dict[str, float] = {}  # account id → when its quota was last asked for

    async def read_due(self) -> None:
        """Read every active login whose quota was never read, or not for QUOTA_EVERY (here, or by anyone whose
        reading the account keeps)."""
        now = self._clock()
        due: list[tuple[Account, Flow]] = []
        for account in self._manager.accounts():
            flow = self._manager.flows.get(account.kind)
            if flow is None or flow.quota_url is None or account.status != "active":
                continue
            last = max(self._read_at.get(account.id, -math.inf), account.windows_at or -math.inf)
            if now - last >= QUOTA_EVERY:
                self._read_at[account.id] = now  # a failure waits its turn too: no hammering GitHub
                due.append((account, flow))
        await asyncio.gather(*(self._read(account, flow) for account, flow in due))

    async def _read(self, account: Account, flow: Flow) -> None:
        token = github_token(account, flow)
        if not token:
            return
        try:
            state = await read_quota(self._http, flow, token)
        except OAuthError as exc:
            log.warning("account %s: its quota could not be read (%s); trying again in %gs", account.id, exc,
                        QUOTA_EVERY)
            return
        if state is None:
            return  # every quota unlimited: nothing to show or to route by
        learn_windows(self._runtime, self._manager, login_credential(account, flow), state, "quota")

    async def run(self) -> None:
        while True:
            try:
                await self.read_due()
            except Exception:
                log.exception("reading quotas failed; trying again at the next tick")
            await asyncio.sleep(TICK)
