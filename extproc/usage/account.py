"""One request's accounting, from its first header to its one usage record. Pure, but for the sink it writes to.

The router-level exchange opens a request's account when its headers come and fills in what it learns (the
client key, the model asked for, whether the client's stream asked for its usage, whether the provider stores
the answer). The later attempts and the stream relay see other streams, so the account travels with the request
in one header it writes and reads itself (`x-extproc-account`). Whoever sees the answer end closes the account:
the exchange for an answer that does not stream and for a request the gateway refused, the relay for a stream,
the access log for an answer Envoy served by itself (the fast path). Closing writes the record, once.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from extproc import tracing
from extproc.core.clients import ClientKey, ClientPolicy
from extproc.core.headers import ACCOUNT_HEADER
from extproc.core.registry import Registry
from extproc.logs import logged_body
from extproc.request.plan import parse_attempt_header
from extproc.usage.accounting import Accounting
from extproc.usage.cost import cost
from extproc.usage.record import UsageRecord, known_name, served
from extproc.usage.tokens import Usage

_NO_CLIENTS = ClientPolicy()


@dataclass(frozen=True, slots=True)
class Answer:
    """How a request was answered, as whoever saw the answer tells it (ids only)."""

    status: int
    attempt: str = ""  # the serving attempt's header; "" when the gateway answered itself
    provider: str = ""
    route: str = ""  # why what served it was chosen (x-extproc-route)
    first_byte: float | None = None  # wall clock: the answer's first byte
    streamed: bool = False


@dataclass(slots=True)
class Account:
    """What a request's usage record needs, known before its answer, and whether the record is written."""

    request_id: str
    start: float  # wall clock, seconds
    client: ClientKey | None = None
    requested: str = ""  # the model the request names, once read
    hide_usage: bool = False  # the client's stream did not ask for its usage: the gateway's extra chunk is kept
    holds: bool = False  # the provider stores the answer (Responses, store on): who made it is remembered
    bodies: tuple[tuple[str, str], ...] = ()  # with log.bodies: the prompt and the answer, secrets masked
    closed: bool = False
    trace: str = ""  # with tracing: the W3C traceparent its gen_ai span joins ("" : no span)
    endpoint: str = ""  # the client endpoint's row name (the span's gen_ai.operation.name)

    def header(self) -> str:
        """The account as it travels with the request (`x-extproc-account`)."""
        quote = urllib.parse.quote
        client = self.client.name if self.client is not None else ""
        return (f"{self.start!r} {quote(client, safe='')} {quote(self.requested, safe='')} "
                f"{int(self.hide_usage)} {int(self.holds)}")

    @classmethod
    def carried(cls, headers: Mapping[str, str], clients: ClientPolicy = _NO_CLIENTS) -> Account | None:
        """The account a request carries (None without accounting, or a header that is not one); its client is the
        configured key of that name, whose budget its record is charged to."""
        parts = headers.get(ACCOUNT_HEADER, "").split(" ")
        if len(parts) != 5 or parts[3] not in ("0", "1") or parts[4] not in ("0", "1"):
            return None
        try:
            start = float(parts[0])
        except ValueError:
            return None
        name = urllib.parse.unquote(parts[1])
        client = clients.named(name)
        return cls(headers.get("x-request-id", "-"), start, client, urllib.parse.unquote(parts[2]), parts[3] == "1",
                   parts[4] == "1")

    def show_prompt(self, body: bytes) -> None:
        """With log.bodies: the record shows the prompt, secrets masked."""
        self.bodies = (*self.bodies, ("request_body", logged_body(body)))

    def show_answer(self, body: bytes) -> None:
        """With log.bodies: the record shows a whole answer, secrets masked."""
        self.bodies = (*self.bodies, ("response_body", logged_body(body)))

    def holder(self, answer: Answer) -> str:
        """The credential that now stores this answer's conversation ("" when none does)."""
        attempted = parse_attempt_header(answer.attempt) if self.holds and answer.status < 400 else None
        return attempted.credential if attempted is not None else ""

    def close(self, sink: Accounting, registry: Registry, api: str, answer: Answer, end: float,
              usage: Usage | None = None) -> None:
        """Write the request's usage record, charged to its client's budget; an account closed already writes
        nothing (one record per request)."""
        if not self.closed:
            self.closed = True
            rec = self.record(registry, api, answer, end, usage)
            sink.record(rec, self.client)
            if self.trace:
                tracing.request_span(rec, self.trace, self.endpoint, self.start, end)

    def record(self, registry: Registry, api: str, answer: Answer, end: float, usage: Usage | None) -> UsageRecord:
        who = served(registry, answer.attempt, answer.provider)
        spent = cost(usage, who.model) if usage is not None and who.model is not None else 0.0
        served_id = who.model.id if who.model else ""
        first = answer.first_byte
        return UsageRecord(self.request_id, self.client.name if self.client is not None else "", api, self.requested,
                           served_id, who.provider, who.credential, who.attempts, answer.status, answer.streamed,
                           max(0.0, end - self.start), None if first is None else max(0.0, first - self.start),
                           usage, spent, answer.route, self.bodies,
                           request_label=self.requested if known_name(registry, self.requested) else "other",
                           response_label=served_id if who.listed else "other")
