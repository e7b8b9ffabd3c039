"""Learning from an upstream's answer: health for the credential and model that served it, login refreshes.

Envoy's upstream access log streams one entry per attempt (gRPC ALS); each carries the attempt's
`x-extproc-attempt` header, so any processor process can learn from any entry, with no ext_proc message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime

from extproc import metrics
from extproc.core.catalog import ModelSpec
from extproc.core.failures import CUT, FAILURES, TIMEOUT, UpstreamFailure
from extproc.core.headers import FAILURE_HEADER
from extproc.core.health import Block, parse_retry_after
from extproc.core.secrets import SecretSource
from extproc.core.settings import Credential
from extproc.core.windows import WindowState, read_windows
from extproc.request.plan import parse_attempt_header, served_by
from extproc.runtime import Runtime

log = logging.getLogger("extproc.request")


def learn(runtime: Runtime, secrets: SecretSource, credential: Credential, model: ModelSpec, endpoint: str, at: float,
          listed: bool, status: int, headers: Mapping[str, str], request_id: str, failure: str = "") -> Block | None:
    """Teach health what one attempt's status says (`failure`: what it was when no provider answered); returns
    the block it caused, if any."""
    now = runtime.clock()
    if credential.windows is not None:
        state = read_windows(credential.windows, headers)
        exhausted = learn_windows(runtime, secrets, credential, state, request_id, status) if state else None
        if exhausted is not None:
            return exhausted
    if credential.refreshable:
        if status == 401 and secrets.invalidate(credential):
            log.info("upstream rid=%s status=401 credential=%s: its token is refreshed before its next use",
                     request_id, credential.id)
            return None  # a login's token is refreshed, not the login suspended
        if 200 <= status < 300:
            secrets.confirm(credential)
    if status == 404 and (endpoint == "completions" or not listed):
        return None  # a legacy endpoint or a made-up model: the client's mistake, not the model's absence
    block = runtime.health.observe(credential.id, model.id, status, parse_retry_after(headers, now), now, at,
                                   endpoint, failure)
    if block is not None and block.kind in ("cooldown", "suspended"):
        (metrics.COOLDOWNS if block.kind == "cooldown" else metrics.SUSPENSIONS).labels(
            credential.route, credential.id).inc()
    if block is None:
        log.debug("upstream rid=%s status=%d", request_id, status)
        return None
    log.warning("upstream rid=%s status=%d model=%s provider=%s credential=%s %s until %s: %s",
                request_id, status, model.id, credential.route, credential.id, block.kind, _when(block.until),
                block.reason)
    return block


def learn_windows(runtime: Runtime, secrets: SecretSource, credential: Credential, state: WindowState,
                  request_id: str, status: int = 200) -> Block | None:
    """What a login's answer said of its subscription's windows (its headers, or an event of its stream): kept with
    the account, and taught to health; returns the cooldown of an exhausted one."""
    secrets.note_windows(credential, state)
    rotate_at = runtime.current.settings.rotate_at
    exhausted = runtime.health.window(credential.id, state, runtime.clock(), rotate_at)
    if exhausted is None and state.utilization >= rotate_at:
        log.info("upstream rid=%s credential=%s: a subscription window is %.0f%% used; it serves last until "
                 "%s", request_id, credential.id, 100 * state.utilization,
                 _when(state.resets_at) if state.resets_at else "it eases")
    if exhausted is not None:
        log.warning("upstream rid=%s status=%d credential=%s cooldown until %s: %s", request_id, status,
                    credential.id, _when(exhausted.until), exhausted.reason)
    return exhausted


def _when(until: float) -> str:
    return "restart or re-login" if until == math.inf else \
        datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_of(status: int, headers: Mapping[str, str], timed_out: bool, cut: bool = False) -> UpstreamFailure | None:
    """What an attempt that got no whole answer was: the attempts' router timed it out (no first byte in time),
    its answer was cut off (the upstream reset it), or Envoy's own reply to it names the kind (trusted with the
    kind's own status only; the provider routes and the relay take a provider's own header off)."""
    if timed_out:
        return TIMEOUT
    if cut:
        return CUT
    failure = FAILURES.get(headers.get(FAILURE_HEADER, ""))
    return failure if failure is not None and failure.status == status else None


def learn_attempt(runtime: Runtime, secrets: SecretSource, attempt: str, status: int, headers: Mapping[str, str],
                  request_id: str, attempt_count: int | None = None,
                  failure: UpstreamFailure | None = None) -> Block | None:
    """Learn from one attempt's access-log entry: `attempt` is the header the attempt went out with.

    An attempt no provider answered (refused, reset, timed out: `failure`) counts as the provider failing: a
    short cooldown, like a 503, recorded as what it was. An attempt with no status and no such failure was
    given up by the gateway, not failed by the provider (its client went away mid-request, as a coding agent's
    user who interrupts one does): nothing is learned of it.
    """
    if not status and failure is None:
        log.debug("upstream rid=%s: given up before an answer (the client went away); nothing learned", request_id)
        return None
    attempted = parse_attempt_header(attempt)
    if attempted is None or (attempt_count is not None and attempted.attempt != attempt_count):
        return None  # an attempt refused before it went: the header is an earlier attempt's
    model, credential, _ = served_by(runtime.current.registry, attempted.owner, attempted.model, attempted.credential)
    if credential is None:
        return None
    if not 200 <= status < 400:
        metrics.FAILOVER_ATTEMPTS.labels(str(status) if status else "none", credential.route).inc()
    why = "" if failure is None else \
        failure.reason.format(seconds=f"{runtime.current.settings.failover.first_byte_timeout:g}")
    return learn(runtime, secrets, credential, model, attempted.endpoint, attempted.at, attempted.listed,
                 failure.status if failure is not None else status, headers, request_id, why)
