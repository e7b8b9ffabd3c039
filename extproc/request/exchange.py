"""One HTTP request's walk through the gateway, sans-IO: events in, plain actions out.

The edge turns Envoy's request messages (headers, then the buffered body) into events and the actions back
into protobuf; nothing here knows gRPC. An exchange reads the runtime snapshot once, carries the matched
endpoint from headers to body, and answers with the plan for every attempt and the first attempt itself.
Each attempt Envoy makes beyond that has an exchange of its own (`attempt.py`); what the attempts got is
learned from Envoy's access log (`learning.py`), not from this stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

import orjson

from extproc import tracing
from extproc.core.admission import busy_refusal
from extproc.core.clients import ClientKey, forbidden, identify, over_rate
from extproc.core.errors import ClientError, CredentialUnavailable
from extproc.core.headers import ATTEMPT_HEADER, PROVIDER_HEADER, ROUTE_HEADER
from extproc.core.providers import Api
from extproc.core.resolve import Decision, candidates
from extproc.fast.routes import fast_candidate
from extproc.formats import Endpoint, ParsedRequest, api_for_path, match_endpoint
from extproc.request.actions import CONTINUE, Continue, Mutate, Reply, internal_error, reject
from extproc.request.gateway import Gateway
from extproc.request.mutation import Forward, route_request
from extproc.request.transforms import TRANSFORMS, asks_without_usage, refusal, translates
from extproc.translate.transform import TranslationCheck
from extproc.usage.account import Account, Answer
from extproc.usage.tokens import Usage, usage_of_answer

log = logging.getLogger("extproc.request")
_SECRET_ATTEMPTS = 3  # credentials tried per request when a login's token cannot be had
_INLINE_BYTES = 1 << 20  # larger bodies are parsed and serialised in a thread: other streams keep moving
_HOLDER_SEARCH = 64  # candidates looked through for the one credential that holds a stored conversation
_T = TypeVar("_T")


def _may_refuse(decision: Decision) -> bool:
    """Whether a candidate's upstream has a rule that refuses some requests: only a provider's own transform
    (ChatGPT's backend) or a cloud's invoke or Converse call has one, so every other candidate skips building its
    transforms to ask."""
    name, provider = decision.provider.transform, decision.provider
    return provider.invoke is not None or provider.converse is not None \
        or name is not None and TRANSFORMS[name].refuses is not None


# ---------------------------------------------------------------- the exchange

class Exchange:
    def __init__(self, gateway: Gateway, trace: str = "") -> None:
        """`trace`: the traceparent of Envoy's span for this stream, with tracing ("" : no spans)."""
        self._gateway = gateway
        self.trace = trace
        self.snapshot = gateway.runtime.current  # read once: this request sees one configuration
        self.request_id = "-"
        self.method = self.path = ""
        self.forward: Forward | None = None
        self._endpoint: Endpoint | None = None
        self._client_headers: Mapping[str, str] = {}
        self.client: ClientKey | None = None
        self.started = gateway.runtime.clock()
        self.account: Account | None = None  # with accounting: this request's, from its headers to its record
        self._streams = False  # the client asked for a stream: it goes through the relay (which closes the account)
        self._answer: Answer | None = None  # how it was answered, until its record is written

    # -- request headers: answer what needs no body

    def request_headers(self, headers: Mapping[str, str], end_of_stream: bool,
                        waited: float | None = None) -> Continue | Mutate | Reply:
        """`waited`: how long the headers took to reach this exchange since Envoy received them, if known."""
        self._client_headers = headers
        self.path, self.method = headers.get(":path", ""), headers.get(":method", "")
        self.request_id = headers.get("x-request-id", "-")
        if self.snapshot.settings.accounting:
            self.account = Account(self.request_id, self.started, trace=self.trace)
        busy = busy_refusal(self.snapshot.settings.admission, waited, self._gateway.open_requests)
        if busy is not None:  # refused before its body is read or anything is spent on it
            return self._replied(reject(api_for_path(self.path), busy))
        try:  # who may spend the owner's credentials, before anything else is looked at
            self.client = identify(self.snapshot.settings.clients, headers)
        except ClientError as err:
            return self._replied(reject(api_for_path(self.path), err))
        if self.account is not None:
            self.account.client = self.client
        reply = self._refusal(end_of_stream)
        if self.account is not None and self._endpoint is not None:
            self.account.endpoint = self._endpoint.name
        if reply is not None:
            return self._replied(reply)
        if self.account is not None:  # the answer's headers, to read usage from what served it
            # An override is a whole processing mode: the body is still wanted as configured.
            return Mutate(body_mode="buffered", answer_headers=True)
        return CONTINUE

    def _refusal(self, end_of_stream: bool) -> Reply | None:
        method, bare = self.method, self.path.partition("?")[0]
        if bare == "/v1/models" or bare.startswith("/v1/models/") and ":" not in bare:
            # Envoy serves GET here on a direct route to the Models service; other methods have no meaning.
            if method != "GET":
                return reject(Api.OPENAI, ClientError(405, "method_not_allowed", f"{bare} takes GET, not {method}."))
            return reject(Api.OPENAI, ClientError(404, "unknown_endpoint", f"{bare} is served by the Models service; "
                                                  "use the Envoy config `extproc envoy-config` prints."))
        self._endpoint = match_endpoint(self.path)
        if self._endpoint is None:
            return reject(api_for_path(self.path), ClientError(
                404, "unknown_endpoint", f"{method} {bare} is not an endpoint this gateway serves."))
        if method != self._endpoint.spec.method:
            return reject(self._endpoint.api, ClientError(
                405, "method_not_allowed", f"{bare} takes {self._endpoint.spec.method}, not {method}."))
        if end_of_stream:
            return reject(self._endpoint.api, ClientError(400, "invalid_request", "The request body is empty."))
        return None

    # -- request body: resolve, fetch the secret, build the one mutation

    async def request_body(self, body: bytes) -> Mutate | Reply:
        with tracing.span("extproc route", self.trace, http__request__method=self.method) as step:
            try:
                outcome = await self._route(body)
            except Exception:  # a bug must cost one request a clear 500, never a silent reset
                log.exception("error rid=%s while routing %s", self.request_id, self.path.partition("?")[0])
                outcome = internal_error(self.path)
            if step is not None:
                tracing.note(step, **_decided(outcome))
        if isinstance(outcome, Reply):
            return self._replied(outcome)
        self.forward, decision = outcome, outcome.decision
        if self.account is not None and self.snapshot.settings.log_bodies:  # a served request's record shows it
            self.account.show_prompt(body)
        fast = self._gateway.fast
        without_usage = self.account is not None and self.account.hide_usage
        if fast is not None and self._endpoint is not None and fast_candidate(self._endpoint.name, self._streams,
                                                                              decision, without_usage):
            fast.note(self._endpoint.name, decision.requested, self._streams)
        log.info("route rid=%s client=%s requested=%r resolved=%s provider=%s why=%s credential=%s", self.request_id,
                 self.client.name if self.client else "-", decision.requested, decision.model.id,
                 decision.provider.name, decision.route, decision.credential.id)
        set_headers = outcome.set_headers
        if self.account is not None and self.account.holds and not self._streams:
            set_headers = {**set_headers, "accept-encoding": "identity"}  # its id is read here: it comes uncompressed
        return Mutate(set_headers, outcome.remove_headers, outcome.body, clear_route_cache=True,
                      dynamic_metadata=outcome.plan.to_metadata() if outcome.plan else {})

    async def _read_requested(self, large: bool, endpoint: Endpoint, body: bytes) -> None:
        """The model a refused request names, read only for its usage record: with accounting off there is none,
        and a client flooding past its limit costs no parse of its bodies."""
        if self.account is not None:
            self.account.requested = await _maybe_in_thread(large, endpoint.requested, body)

    def _note_request(self, endpoint: Endpoint, parsed: ParsedRequest) -> None:
        """What the request's record and the relay need of its body, read before any attempt changes it."""
        account = self.account
        if account is None:
            return
        account.requested = parsed.view.model
        account.hide_usage = asks_without_usage(endpoint, parsed.doc)
        account.holds = endpoint.name == "responses" and parsed.doc.get("store") is not False

    async def _over_limits(self, client: ClientKey, large: bool, endpoint: Endpoint, body: bytes) -> ClientError | None:
        """The 429 of the first limit the request is over (budgets, tokens, then requests per minute, the key's
        before its team's), before any work; a request refused by one is not counted by the ones after it."""
        limits = self._gateway.accounting.limits
        if client.budgets and (over := await limits.budget_refusal(client)) is not None:
            return over
        if client.token_limited:
            model = await _maybe_in_thread(large, endpoint.requested, body) if client.tpm_per_model else ""
            if (over := await limits.token_refusal(client, model)) is not None:
                return over
        for counter, who, rpm in client.rates:
            wait = await self._gateway.limiter.admit(counter, rpm)
            if wait is not None:
                return over_rate(who, rpm, wait)
        return None

    async def _route(self, body: bytes) -> Forward | Reply:
        endpoint = self._endpoint
        if endpoint is None:  # the headers event answered these already
            return reject(api_for_path(self.path), ClientError(404, "unknown_endpoint", "No endpoint was matched."))
        client = self.client
        large = len(body) >= _INLINE_BYTES
        over = await self._over_limits(client, large, endpoint, body) if client is not None else None
        if over is not None:  # refused before any work: only the model is read, for its record
            await self._read_requested(large, endpoint, body)
            return reject(endpoint.api, over)
        try:
            parsed = await _maybe_in_thread(large, endpoint.read, body)
        except ClientError as err:
            await self._read_requested(large, endpoint, body)  # a model with a bad field
            return reject(endpoint.api, err)
        self._streams = "streaming" in parsed.view.needs
        self._note_request(endpoint, parsed)
        previous = parsed.doc.get("previous_response_id") if endpoint.name == "responses" else None
        holder = await self._gateway.holders.holder(previous) if isinstance(previous, str) and previous else None
        attempts = self.snapshot.settings.failover.attempts
        for _ in range(_SECRET_ATTEMPTS):
            try:
                decisions = self._held_by(holder, str(previous), parsed) if holder is not None \
                    else self._candidates(parsed, endpoint, attempts)
            except ClientError as err:
                return reject(endpoint.api, err)
            decision = decisions[0]
            try:  # also for a first attempt its own processor builds: a login that cannot serve is re-planned here
                secret = await self._gateway.secrets.secret(decision.credential)
            except CredentialUnavailable as exc:
                self._gateway.unavailable(decision.credential, exc)
                continue  # fail closed for this credential, and let resolution pick the next one
            return await _maybe_in_thread(large, route_request, endpoint, parsed, decisions, secret,
                                          self._client_headers, self._gateway.success_is_news(decision),
                                          self.snapshot.settings.failover, self.account)
        return reject(endpoint.api, ClientError(503, "credentials_unavailable",
                                                "No credential for this model could be used right now."))

    def _candidates(self, parsed: ParsedRequest, endpoint: Endpoint, attempts: int) -> list[Decision]:
        """The plan's first `attempts` candidates this client may use and whose API can express the request; a
        candidate left out for either reason does not cost the request one of its attempts."""
        runtime, turn, limit = self._gateway.runtime, self._gateway.turn(), attempts
        while True:
            planned = candidates(parsed.view, self.snapshot.registry, runtime.health, runtime.clock(), turn, limit)
            kept = self._translatable(self._allowed(planned), endpoint, parsed)
            if len(kept) >= attempts or len(planned) < limit or limit >= 4 * attempts:
                return kept[:attempts]
            limit += attempts

    def _held_by(self, holder: str, previous: str, parsed: ParsedRequest) -> list[Decision]:
        """A conversation the provider stores goes on only where it is held: that one credential, or a clear
        error (never another account, which would answer that it knows no such response)."""
        runtime = self._gateway.runtime
        # Every candidate, translated ones too (one credential is kept, whatever its API): a translated holder is
        # told apart from a model this API cannot reach at all.
        everywhere = replace(parsed.view, same_provider=False)
        try:
            planned = candidates(everywhere, self.snapshot.registry, runtime.health, runtime.clock(),
                                 self._gateway.turn(), _HOLDER_SEARCH)
        except ClientError as err:  # nothing can serve the model now (the holder its only credential): say why
            if err.status != 503:
                raise
            planned, wait = [], err.retry_after
        else:
            wait = None
        held = [d for d in self._allowed(planned) if d.credential.id == holder]
        if held and self._endpoint is not None and (why := refusal(held[0], self._endpoint, parsed.doc)):
            raise ClientError(400, "conversation_not_stored", f"previous_response_id {previous!r}: {why}.",
                              retryable=False)
        if held and translates(held[0]) is not None:
            raise ClientError(400, "conversation_not_stored", f"previous_response_id {previous!r} names an answer "
                              "another API's provider made (translated): no conversation is stored under it. Send "
                              "the whole conversation in `input` instead.", retryable=False)
        if not held:
            raise ClientError(503, "conversation_unavailable", f"The conversation previous_response_id {previous!r} "
                              "continues is stored by one account, which cannot serve this request now (cooling "
                              "down, suspended or no longer configured). Retry later, or send the whole "
                              "conversation in `input` without previous_response_id to be served elsewhere.",
                              retry_after=wait)
        return held[:1]

    def _translatable(self, decisions: list[Decision], endpoint: Endpoint, parsed: ParsedRequest) -> list[Decision]:
        """The candidates whose API can express this request: one another API serves is translated, unless it
        uses what that API cannot say, and one whose upstream's transforms refuse what it asks (a ChatGPT login
        and `previous_response_id`) is left out; if none is left, the client is told why."""
        reasons: dict[str, str | None] = {}  # by target endpoint: the request is checked once for each
        check = TranslationCheck(endpoint.name, parsed.doc, "streaming" in parsed.view.needs, endpoint.query)
        kept, refused = [], None
        for d in decisions:
            if _may_refuse(d) and (why := refusal(d, endpoint, parsed.doc)) is not None:  # its upstream cannot take it
                refused = refused or why
                continue
            target = translates(d)
            if target is not None and endpoint.counts_tokens:
                reasons[target[1]] = "token counting is answered in the model's own API only"
                continue
            if target is not None:
                if target[1] not in reasons:
                    reasons[target[1]] = check.refusal(target[1], d.model.id)
                if reasons[target[1]] is not None:
                    continue
            kept.append(d)
        if not kept and refused is not None and not any(reasons.values()):
            raise ClientError(400, "unsupported_by_upstream", f"The model {decisions[0].model.id!r} cannot serve "
                              f"this request here: {refused}.", retryable=False)
        if not kept:
            why = next(r for r in reasons.values() if r is not None)
            raise ClientError(400, "untranslatable", f"The model {decisions[0].model.id!r} is served through another "
                              f"API, which cannot express this request: {why}.", retryable=False)
        return kept

    def _allowed(self, decisions: list[Decision]) -> list[Decision]:
        """The candidates this client's key may use: what it asked for must match, and every model it may end
        on (a fallback is no way around the key's models)."""
        client = self.client
        if client is None or not client.models:
            return decisions
        requested = decisions[0].requested
        if not client.may_use(requested):
            raise forbidden(client, requested)
        allowed = [d for d in decisions if client.may_use(d.model.id, d.model.qualified)]
        if not allowed:
            raise forbidden(client, decisions[0].model.id)
        return allowed

    # -- the answer (asked for with accounting): who served it and, unless it streams, its usage

    def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Continue | Mutate:
        if self.account is None or self.forward is None:
            return CONTINUE
        try:
            status = int(headers.get(":status", "0"))
        except ValueError:
            status = 0
        streamed = headers.get("content-type", "").startswith("text/event-stream")
        self._answer = Answer(status, headers.get(ATTEMPT_HEADER, ""), headers.get(PROVIDER_HEADER, ""),
                              headers.get(ROUTE_HEADER, ""), self._gateway.runtime.clock(), streamed)
        hide = Mutate(remove_headers=(ATTEMPT_HEADER,))  # ids only, but the client's business they are not
        if streamed and self._streams:
            return hide  # the relay read this stream's usage and wrote its record
        if end_of_stream or streamed or headers.get("content-encoding", "identity").lower() != "identity":
            self._close(None)
            return hide
        return Mutate(remove_headers=(ATTEMPT_HEADER,), body_mode="buffered")

    def response_body(self, body: bytes, end_of_stream: bool) -> Continue:
        answer, account = self._answer, self.account
        if answer is not None and account is not None and self.forward is not None:
            if self.snapshot.settings.log_bodies:
                account.show_answer(body)
            if holder := account.holder(answer):
                self._gateway.hold(answer_id(body), holder)
            self._close(usage_of_answer(self._endpoint.api if self._endpoint else Api.OPENAI, body))
        return CONTINUE

    def _close(self, usage: Usage | None) -> None:
        """The served request's record, once its answer is in (a stream's is the relay's)."""
        answer, account = self._answer, self.account
        if answer is None or account is None or self.forward is None:
            return
        self._answer = None  # one record per request
        account.close(self._gateway.accounting, self.snapshot.registry,
                      self._endpoint.api.value if self._endpoint else "", answer, self._gateway.runtime.clock(), usage)

    def _replied(self, reply: Reply) -> Reply:
        account = self.account
        if account is not None:  # refused here: nothing served it, nothing was spent
            if not account.requested:  # refused at its headers: Gemini's path names it
                endpoint = self._endpoint or match_endpoint(self.path)
                account.requested = endpoint.requested() if endpoint is not None else ""
            account.close(self._gateway.accounting, self.snapshot.registry, api_for_path(self.path).value,
                          Answer(reply.status), self._gateway.runtime.clock())
        bare = self.path.partition("?")[0]
        if reply.error is None:
            log.debug("reply rid=%s %s %s status=%d", self.request_id, self.method, bare, reply.status)
        else:
            log.info("reject rid=%s client=%s %s %r status=%d kind=%s: %s", self.request_id,
                     self.client.name if self.client else "-", self.method, bare, reply.status, reply.error.kind,
                     reply.error.message)
        return reply


def _decided(outcome: Forward | Reply) -> dict[str, object]:
    """What the decision span says of the decision: the plan's first candidate and its length, or the refusal."""
    if isinstance(outcome, Reply):
        return {"http.response.status_code": outcome.status,
                "error.type": outcome.error.kind if outcome.error is not None else None}
    d = outcome.decision
    return {"gen_ai.request.model": d.requested, "gen_ai.provider.name": d.provider.name,
            "extproc.model": d.model.id, "extproc.route": d.route, "extproc.credential": d.credential.id,
            "extproc.planned_attempts": len(outcome.plan.candidates) if outcome.plan else 1,
            "extproc.translated": translates(d) is not None}


def answer_id(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get("id") or "") if isinstance(doc, dict) else ""


async def _maybe_in_thread(large: bool, work: Callable[..., _T], *args: object) -> _T:
    return await asyncio.to_thread(work, *args) if large else work(*args)
