"""An attempt that got no answer from its provider: refused, reset, or silent past its time.

Envoy meets these itself and answers the client in its own envelope (`bootstrap.local_replies`), with the
failure's kind in a response header, so learning records what happened instead of a bare status; the stream
relay, which calls providers itself, answers the same way. One table, so the three say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """One way an attempt can fail before any answer, as the client and health are told it."""

    kind: str  # the failure header's value and the code in the client's envelope
    status: int  # what the client gets: 502 (no answer came), 504 (none came in time)
    told: str  # the client's message; `{provider}` and `{seconds}` are filled in where it is sent
    reason: str  # what health records: the log, the Models API and a later 503 show it

    def message(self, provider: str, seconds: str = "") -> str:
        return self.told.format(provider=provider, seconds=seconds)


REFUSED = UpstreamFailure("connection_refused", 502, "Connection refused by provider {provider}.",
                          "connection refused")
UNREACHABLE = UpstreamFailure("connect_failed", 502, "Could not connect to provider {provider}.",
                              "could not connect")
RESET = UpstreamFailure("connection_reset", 502, "The connection to provider {provider} was reset before it "
                        "answered.", "connection reset before an answer")
TIMEOUT = UpstreamFailure("upstream_timeout", 504, "Provider {provider} did not answer within {seconds} s.",
                          "no answer within {seconds} s")

# An answer that began but ended before it was whole, while it was held to be reshaped (a stream collected into
# one answer): the client has had nothing yet, so it is told as the gateway's error, not as a cut answer.
CUT = UpstreamFailure("answer_cut", 502, "Provider {provider}'s answer was cut off before it was complete.",
                      "answer cut off")

FAILURES = {f.kind: f for f in (REFUSED, UNREACHABLE, RESET, TIMEOUT, CUT)}
