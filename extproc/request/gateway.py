"""What every exchange of one processor shares: the runtime, where secrets come from, the client keys' request
counts, accounting, the conversations' holders and the round-robin turn."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from extproc.core.errors import CredentialUnavailable
from extproc.core.resolve import Decision
from extproc.core.secrets import SecretSource, StaticSecrets
from extproc.core.settings import Credential
from extproc.runtime import Runtime
from extproc.state.conversations import ConversationHolders, LocalHolders
from extproc.state.rate_limit import LocalRateLimiter, RateLimiter
from extproc.usage.accounting import Accounting

if TYPE_CHECKING:
    from extproc.fast.hot import HotModels

log = logging.getLogger("extproc.request")


class Gateway:
    """What every exchange shares: the runtime, where secrets come from, the client keys' request counts,
    and the round-robin turn."""

    def __init__(self, runtime: Runtime, secrets: SecretSource | None = None,
                 limiter: RateLimiter | None = None, accounting: Accounting | None = None,
                 holders: ConversationHolders | None = None, fast: HotModels | None = None) -> None:
        self.runtime = runtime
        self.secrets: SecretSource = secrets or StaticSecrets()
        self.limiter: RateLimiter = limiter or LocalRateLimiter(runtime.clock)
        self.accounting = accounting or Accounting(clock=runtime.clock)
        self.holders: ConversationHolders = holders or LocalHolders()
        self.fast = fast  # the models that could go fast, noted for the routes file's publisher (here or elsewhere)
        self._holding: set[asyncio.Task[None]] = set()
        self._turns = itertools.count()
        self.open_requests = 0  # being routed or relayed now: what processor.max_requests bounds

    @contextlib.contextmanager
    def holding(self) -> Iterator[Slot]:
        """One request open in this processor until the block ends or the slot is released."""
        slot = Slot(self)
        self.open_requests += 1
        try:
            yield slot
        finally:
            slot.release()

    def hold(self, response_id: str, credential: str) -> None:
        """Remember which credential made a stored answer (written in the background, kept until written)."""
        if response_id and credential:
            task = asyncio.get_running_loop().create_task(self.holders.remember(response_id, credential))
            self._holding.add(task)
            task.add_done_callback(self._holding.discard)

    def turn(self) -> int:
        return next(self._turns)

    def unavailable(self, credential: Credential, exc: CredentialUnavailable) -> None:
        """A credential's secret cannot be had: out of rotation, for good or for a short cooldown."""
        log.warning("credential %s unavailable: %s", credential.id, exc.reason)
        runtime = self.runtime
        until = math.inf if exc.permanent else runtime.clock() + runtime.current.settings.health.server_error_cooldown
        runtime.health.suspend(credential.id, exc.reason, until)

    def success_is_news(self, decision: Decision) -> bool:
        """Whether a success of this attempt must be learned (it reports a subscription's windows, clears a
        failure or confirms a token); the access log carries only failures and these, so a healthy request
        on an API key costs no learning at all."""
        return decision.credential.windows is not None \
            or self.runtime.health.remembers(decision.credential.id, decision.model.id) \
            or self.secrets.awaits_confirmation(decision.credential)


class Slot:
    """A request's place among the open ones (processor.max_requests): routed, or its stream relayed."""

    __slots__ = ("_gateway",)

    def __init__(self, gateway: Gateway) -> None:
        self._gateway: Gateway | None = gateway

    def release(self) -> None:
        if self._gateway is not None:
            self._gateway.open_requests -= 1
            self._gateway = None
