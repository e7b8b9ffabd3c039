"""One attempt of a request, seen from the processor in the provider cluster's filter chain. Sans-IO.

Envoy runs it for every attempt the router-level answer did not make itself: the retries of same-request
failover, and a first attempt whose transforms reshape the body. It reads which attempt this is
(`x-envoy-attempt-count`), the plan the router-level answer left in dynamic metadata, and the endpoint Envoy
picked; it builds that attempt from the client's body with the candidate's model, path, credential and
transforms. The header map is shared between attempts, so it first undoes what the first attempt set.
Nothing is shared between streams: any processor process can take any attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from extproc import tracing
from extproc.core.errors import ClientError, CredentialUnavailable
from extproc.core.flows import merged_header_names
from extproc.core.headers import (
    ATTEMPT_COUNT_HEADER,
    ATTEMPT_HEADER,
    LEARN_HEADER,
    PLAN_HEADER,
    PROVIDER_HEADER,
    client_value_header,
)
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS
from extproc.core.resolve import Decision
from extproc.core.windows import StreamWindows, stream_windows
from extproc.formats import Endpoint, match_endpoint
from extproc.request.actions import CONTINUE, Continue, Mutate, Reply, reject
from extproc.request.gateway import Gateway
from extproc.request.learning import learn_windows
from extproc.request.mutation import build_forward
from extproc.request.plan import REFUSED_ROUTE, Plan, attempt_header, decision_for
from extproc.request.transforms import Shaper, Transform, selected, translates

log = logging.getLogger("extproc.request")

class AttemptExchange:
    WANTED_RESPONSE_HEADERS = frozenset({":status", "content-type", "content-encoding"})

    def __init__(self, gateway: Gateway, trace: str = "") -> None:
        """`trace`: the traceparent of Envoy's span for this stream, with tracing ("" : no span)."""
        self._gateway = gateway
        self.trace = trace
        self.snapshot = gateway.runtime.current
        self.request_id = "-"
        self.attempt = 0
        self.decision: Decision | None = None
        self._plan: Plan | None = None
        self._endpoint: Endpoint | None = None
        self._client_headers: dict[str, str] = {}
        self._restore: dict[str, str | None] = {}  # the plan's headers to undo → the client's value (None: remove)
        self._transforms: tuple[Transform, ...] = ()  # selected once, from the headers (whether it streams unknown)
        self._shaping: tuple[Callable[[bool, int], Shaper], ...] = ()  # the answer's shaper makers, once built
        self._shapers: tuple[Shaper, ...] = ()
        self._windows: StreamWindows | None = None  # a login's windows event, in a stream collected here

    # -- request headers: which attempt, which candidate, and is this the endpoint it was meant for

    def request_headers(self, headers: Mapping[str, str], plan_text: str | None,
                        host_route: str | None) -> Mutate:
        self.request_id = headers.get("x-request-id", "-")
        try:
            self.attempt = int(headers.get(ATTEMPT_COUNT_HEADER) or 1)
            # A fast route's plan comes as a header its route set (a client's own is removed there).
            plan = self._plan = Plan.from_metadata(plan_text or headers.get(PLAN_HEADER) or "")
        except (ValueError, KeyError, TypeError):
            return self._refuse("The request reached a provider without a routing plan.")
        if not 1 <= self.attempt <= len(plan.candidates):  # Envoy counts from 1: a count below names no candidate
            return self._refuse("No candidate is left for this attempt.")
        candidate = plan.candidates[self.attempt - 1]
        if host_route != candidate.route:  # never a credential to another provider (nor to one Envoy did not name)
            return self._refuse("This attempt reached another provider than planned.")
        self._endpoint = match_endpoint(plan.path)
        decision = decision_for(candidate, plan, self.snapshot.registry,
                                self._endpoint.name if self._endpoint else "")
        if self._endpoint is None or decision is None:
            return self._refuse(
                f"The credential planned for attempt {self.attempt} is no longer configured.")
        self.decision = decision
        # The client's headers as they came: undo what the first attempt set on the shared header map (a fast
        # route, planned before any request, kept the client's value of a header it joined a login's to).
        merged = merged_header_names(self.snapshot.settings.flows)
        self._restore = {k: headers.get(client_value_header(k)) if v is None and k in merged else v
                         for k, v in plan.restore.items()}
        self._client_headers = {k: v for k, v in headers.items() if k not in plan.restore}
        self._client_headers.update({k: v for k, v in self._restore.items() if v is not None})
        # Before the body says whether it streams: a provider that only streams may collect the answer. Its
        # translate step, selected for that, changes nothing when the request turns out to stream in its own API.
        self._transforms = selected(decision)
        reshapes_answer = any(t.answer or t.reshapes for t in self._transforms)
        return Mutate(body_mode="buffered", answer_headers=reshapes_answer)

    # -- request body: build this attempt

    async def request_body(self, body: bytes) -> Mutate | Reply:
        decision = self.decision
        with tracing.span("extproc attempt", self.trace, extproc__attempt=self.attempt) as step:
            if step is not None and decision is not None:
                target = translates(decision)
                tracing.note(step, gen_ai__provider__name=decision.provider.name, extproc__model=decision.model.id,
                             extproc__credential=decision.credential.id,
                             extproc__translated_to=target[1] if target else None)
            return await self._build(body)

    async def _build(self, body: bytes) -> Mutate | Reply:
        plan, endpoint, decision = self._plan, self._endpoint, self.decision
        if plan is None or endpoint is None or decision is None:
            return self._refuse("The attempt's headers were not seen.")
        try:
            parsed = endpoint.read(body)
            secret = await self._gateway.secrets.secret(decision.credential)
        except ClientError as err:
            return reject(endpoint.api, err)
        except CredentialUnavailable as exc:
            self._gateway.unavailable(decision.credential, exc)
            return self._refuse("The planned credential cannot be used now.")
        forward = build_forward(endpoint, parsed, decision, self._transforms, secret, self._client_headers,
                                self._gateway.runtime.current.settings.accounting)
        # Undo what earlier attempts set (the client's values back, or nothing), then this attempt's own; the
        # length is always this attempt's: the map may carry an earlier attempt's.
        set_headers = {k: v for k, v in self._restore.items() if v is not None and k not in forward.remove_headers}
        set_headers.update(forward.set_headers)
        set_headers["content-length"] = str(len(forward.body if forward.body is not None else body))
        set_headers[ATTEMPT_HEADER] = attempt_header(decision, self.attempt)
        if self._gateway.success_is_news(decision):
            set_headers[LEARN_HEADER] = "1"
        gone = {k for k, v in self._restore.items() if v is None} | set(forward.remove_headers) | {LEARN_HEADER}
        remove = tuple(sorted(gone - set(set_headers)))
        self._shaping = forward.answer
        log.info("attempt rid=%s n=%d requested=%r resolved=%s provider=%s why=%s credential=%s", self.request_id,
                 self.attempt, decision.requested, decision.model.id, decision.provider.name, decision.route,
                 decision.credential.id)
        return Mutate(set_headers, remove, forward.body)

    # -- the answer: through this attempt's shapers, when its transforms reshape it

    def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Continue | Mutate:
        makers = self._shaping
        encoded = headers.get("content-encoding", "identity").lower() != "identity"
        if not makers or end_of_stream or encoded:
            return CONTINUE
        try:
            status = int(headers.get(":status", "200"))
        except ValueError:
            status = 502
        # An error is reshaped whole, whatever its type says: one envelope, never one per chunk.
        streamed = headers.get("content-type", "").startswith("text/event-stream") and status < 400
        self._shapers = tuple(make(streamed, status) for make in makers)
        # A stream collected into one answer (a provider that only streams) leaves whole, as JSON.
        collected = streamed and any(s.collects for s in self._shapers)
        streamed = streamed and not collected
        if collected and self.decision is not None:  # (a stream the client gets passes the relay, which reads it)
            self._windows = stream_windows(self.decision.credential.windows)
        # The reshaped answer's length is not the provider's (and Envoy checks a length set on a mutated body
        # in this chain against the original): it goes out without one. What is reshaped whole is JSON.
        return Mutate({} if streamed else {"content-type": "application/json"}, ("content-length",),
                      body_mode="streamed" if streamed else "buffered")

    def response_body(self, chunk: bytes, end_of_stream: bool) -> Continue | Mutate:
        if not self._shapers:
            return CONTINUE
        if self._windows is not None and self.decision is not None and (state := self._windows.feed(chunk)):
            learn_windows(self._gateway.runtime, self._gateway.secrets, self.decision.credential, state,
                          self.request_id)
        for shaper in self._shapers:
            chunk = shaper.feed(chunk, end_of_stream)
        failed = next((s.failed_status for s in self._shapers if s.failed_status), None)
        if failed is not None:  # a stream collected into one answer failed: the client's status says so
            return Mutate({":status": str(failed)}, body=chunk)
        return Mutate(body=chunk)

    def _refuse(self, message: str) -> Mutate:
        """Fail closed, and let Envoy try the next candidate: the attempt goes out with no credential at all and
        a provider header no provider has, so the internal listener Envoy picked answers a 503 itself (a reply
        from this filter would go to the client unretried). No attempt header: nothing is learned from it."""
        log.warning("attempt rid=%s n=%d refused: %s", self.request_id, self.attempt, message)
        return Mutate({PROVIDER_HEADER: REFUSED_ROUTE},
                      tuple(sorted({*CLIENT_CREDENTIAL_HEADERS, ATTEMPT_HEADER, LEARN_HEADER})))
