"""Admission: a request the processor cannot answer in time is refused at once, in the client's envelope.

Envoy gives each ext_proc message `MESSAGE_TIMEOUT` to be answered; past it, the request ends with an empty 504
(turned into the same refusal by `bootstrap.local_replies`). A saturated processor is told apart before that by
how long a request's headers waited to be read (Envoy's `request.time` against the processor's clock) and by how
many requests it holds open; over either limit a new request gets 503 `gateway_overloaded` with `retry-after`,
before its body is read, and a request already admitted is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from extproc.core.errors import ClientError

MESSAGE_TIMEOUT = 5.0  # s: Envoy's wait for each answer of the router-level ext_proc stream
RETRY_AFTER = 1  # s: a burst is over in about that; the SDKs retry a 503 with retry-after by themselves
OVERLOADED_KIND = "gateway_overloaded"


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """`processor.max_wait` and `processor.max_requests` (0: no limit), per processor process."""

    max_wait: float = 2.0  # s a request's headers may wait to be read, well under MESSAGE_TIMEOUT
    max_requests: int = 0  # requests one processor holds at once: being routed, or a stream being relayed


def overloaded(why: str) -> ClientError:
    """The refusal of a request the gateway cannot take now (`why` names the limit; no secret)."""
    return ClientError(503, OVERLOADED_KIND, f"The gateway is too busy to take this request now ({why}); nothing "
                       f"was sent upstream. Retry in {RETRY_AFTER} s.", retry_after=RETRY_AFTER)


def waited(sent_at: str, now: float) -> float | None:
    """Seconds since Envoy received the request (`request.time`, RFC 3339), or None if it cannot be read."""
    try:
        return now - datetime.fromisoformat(sent_at).timestamp()
    except ValueError:
        return None


def busy_refusal(policy: AdmissionPolicy, wait: float | None, open_requests: int) -> ClientError | None:
    """Why a new request is refused now, if it is: its headers waited too long, or too many are open."""
    if wait is not None and wait > policy.max_wait:
        return overloaded(f"its headers waited {wait:.1f} s for the processor; processor.max_wait is "
                          f"{policy.max_wait:g} s")
    if policy.max_requests and open_requests > policy.max_requests:
        return overloaded(f"processor.max_requests: {policy.max_requests} open")
    return None
