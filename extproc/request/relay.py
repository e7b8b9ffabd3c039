"""The stream relay: streamed answers pass through the processor on their way from the provider to Envoy.

Envoy cannot add to a response whose upstream failed after the first byte: it resets the client's stream,
and a client may read the cut as an end. So an attempt whose answer streams goes from its provider listener
to this relay, which makes the call to the provider itself, passes every chunk on as it comes, and when the
provider fails midway (reset, cut, timeout) ends the stream cleanly with an error event in the client's
own format (Anthropic `event: error`, OpenAI `data: {"error": …}` or `response.failed`, Gemini's error
object), and teaches health what happened. Before the first byte nothing changes: a status the provider
answers goes back as it came, and Envoy fails over on it as on any other.

Requests reach it from Envoy only, with the processor token; the attempt is already built (credential,
path, body), so the relay only adds the transport. aiohttp serves, httpx calls the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from aiohttp import web

from extproc import tracing
from extproc.core.errors import ClientError
from extproc.core.failures import CUT, REFUSED, RESET, TIMEOUT, UNREACHABLE, UpstreamFailure
from extproc.core.headers import (
    ACCOUNT_HEADER,
    API_HEADER,
    ATTEMPT_HEADER,
    FAILURE_HEADER,
    PROVIDER_HEADER,
    RELAY_HEADERS,
    ROUTE_HEADER,
    UPSTREAM_API_HEADER,
)
from extproc.core.providers import Api, ProviderSpec
from extproc.core.settings import Credential, Settings
from extproc.core.windows import stream_windows
from extproc.formats import FAMILIES, error_body
from extproc.formats.bedrock import EVENT_STREAM, BedrockStream
from extproc.formats.errors import openai_stream_error
from extproc.request.gateway import Gateway
from extproc.request.learning import learn_attempt, learn_windows
from extproc.request.plan import Attempted, parse_attempt_header, served_by
from extproc.usage.account import Account, Answer
from extproc.usage.tokens import StreamUsage

log = logging.getLogger("extproc.request")
TOKEN_HEADER = RELAY_HEADERS[0]
# Hop-by-hop, transport and our own: never passed on in either direction.
_NOT_FORWARDED = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                            "proxy-connection", "content-length", "accept-encoding", API_HEADER, ATTEMPT_HEADER,
                            PROVIDER_HEADER, ROUTE_HEADER, ACCOUNT_HEADER, UPSTREAM_API_HEADER, *RELAY_HEADERS})
# Hop-by-hop and framing headers, and the failure kind only the gateway may say (a provider's cannot pass for it).
_NOT_RETURNED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date",
                           FAILURE_HEADER})


@dataclass(slots=True)
class _Stream:
    """One relayed stream as it goes: what learning, the conversation's holder and the account read of it."""

    rid: str
    api: Api  # the client's
    provider: str
    attempt: str  # the attempt's header
    attempted: Attempted | None  # … read
    route: str  # why its candidate was chosen
    status: int
    account: Account | None  # with accounting: the request's, carried with it
    usage: StreamUsage | None  # read as the stream passes, when it is accounted
    first: float | None = None  # when its first chunk came
    sent: int = 0  # bytes passed on


class Relay:
    def __init__(self, gateway: Gateway, client: httpx.AsyncClient, token: str | None) -> None:
        self._gateway = gateway
        self._client = client
        self._token = token.encode() if token is not None else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._trusted(request):
            return web.Response(status=403, text="forbidden")
        with self._gateway.holding(), tracing.span(  # an admitted stream: counted, never refused
                "extproc relay", tracing.parent_of(request.headers),
                gen_ai__provider__name=request.headers.get(PROVIDER_HEADER)) as step:
            response = await self._handle(request)
            if step is not None:
                tracing.note(step, http__response__status_code=response.status)
            return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        api = Api.named(request.headers.get(API_HEADER, ""))
        provider = self._gateway.runtime.current.registry.providers.get(request.headers.get(PROVIDER_HEADER, ""))
        if provider is None:
            return _reply(api, ClientError(503, "attempt_refused", "This attempt names no provider of this gateway."))
        body = await request.read()
        upstream = await self._call(request, api, provider, body)
        if isinstance(upstream, web.Response):
            return upstream
        try:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_RETURNED}
            content_type = upstream.headers.get("content-type", "")
            frames = BedrockStream(provider.invoke.stream_errors if provider.invoke else {}) \
                if content_type.startswith(EVENT_STREAM) and (provider.invoke or provider.converse) else None
            if not content_type.startswith("text/event-stream") and frames is None:
                content = await upstream.aread()  # an error, or an answer that does not stream: as it came
                return web.Response(status=upstream.status_code, headers=out_headers, body=content)
            if frames is not None:  # Bedrock's framing: it goes on as SSE (Anthropic's stream, or Converse's events)
                out_headers["content-type"] = "text/event-stream"
            response = web.StreamResponse(status=upstream.status_code, headers=out_headers)
            await response.prepare(request)
            await self._relay(self._stream(request, api, provider.name, upstream.status_code), upstream, response,
                              body, frames)
            return response
        finally:
            await upstream.aclose()

    def _trusted(self, request: web.Request) -> bool:
        """Only Envoy may send here: it presents the processor token."""
        if self._token is None or hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), self._token):
            return True
        log.warning("relay: refused a request without the processor token (from %s)", request.remote)
        return False

    async def _call(self, request: web.Request, api: Api, provider: ProviderSpec,
                    body: bytes) -> httpx.Response | web.Response:
        """The transport: the attempt as Envoy built it, sent to its provider; one that gets no answer is told as
        Envoy's own reply would tell it."""
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        headers.append(("accept-encoding", "identity"))  # an error event can only be added to plain text
        upstream_url = provider.upstream.scheme + "://" + provider.upstream.authority + request.path_qs
        try:
            return await self._client.send(
                self._client.build_request(request.method, upstream_url, headers=headers, content=body),
                stream=True)
        except httpx.HTTPError as exc:
            met = no_answer(exc)
            log.warning("relay rid=%s provider=%s: no answer, %s (%s)", request.headers.get("x-request-id", "-"),
                        provider.name, met.reason, type(exc).__name__)
            told = ClientError(met.status, met.kind, met.message(provider.name, f"{self._client.timeout.read or 0:g}"))
            return _reply(api, told, {FAILURE_HEADER: met.kind})  # learned as Envoy's own reply is

    def _stream(self, request: web.Request, api: Api, provider: str, status: int) -> _Stream:
        headers = request.headers
        account = Account.carried(headers, self._gateway.runtime.current.settings.clients)  # with accounting
        if account is not None:
            account.trace = tracing.parent_of(headers)
            account.endpoint = "streamGenerateContent" if api is Api.GEMINI else ""
        upstream_api = headers.get(UPSTREAM_API_HEADER)  # translated: the stream is in this API
        usage = None if account is None else StreamUsage(Api.named(upstream_api), False) if upstream_api \
            else StreamUsage(api, account.hide_usage)
        attempt = headers.get(ATTEMPT_HEADER, "")
        return _Stream(headers.get("x-request-id", "-"), api, provider, attempt, parse_attempt_header(attempt),
                       headers.get(ROUTE_HEADER, ""), status, account, usage)

    async def _relay(self, stream: _Stream, upstream: httpx.Response, response: web.StreamResponse,
                     body: bytes, frames: BedrockStream | None = None) -> None:
        """Pass the stream on (`frames`: decoded from Bedrock's framing first); a failure midway ends it with an
        error event; once it ends, remember who holds the conversation and write the request's record."""
        try:
            await self._pass_on(stream, upstream, response, frames)
        except ConnectionResetError:  # Envoy (the client) went away: nothing to tell, the provider call ends
            stream.status = 499  # the client closed the request (nginx's figure)
            return
        except httpx.HTTPError as exc:
            stream.status = 502
            await self._cut(stream, response, exc)
        finally:
            self._ended(stream, body)
        await response.write_eof()

    async def _pass_on(self, stream: _Stream, upstream: httpx.Response, response: web.StreamResponse,
                       frames: BedrockStream | None) -> None:
        """Each chunk as it comes, read for its usage and a login's windows on the way."""
        runtime, usage = self._gateway.runtime, stream.usage
        credential = self._credential(stream.attempted)
        windows = stream_windows(credential.windows) if credential is not None else None
        async for raw in upstream.aiter_raw():
            chunk = frames.feed(raw) if frames is not None else raw
            if not chunk:
                continue
            if stream.first is None:
                stream.first = runtime.clock()
            if windows is not None and credential is not None and (state := windows.feed(chunk)):
                learn_windows(runtime, self._gateway.secrets, credential, state, stream.rid)
            await response.write(usage.feed(chunk) if usage is not None else chunk)
            stream.sent += len(chunk)
        if usage is not None:
            await response.write(usage.feed(b"", end=True))

    def _credential(self, attempted: Attempted | None) -> Credential | None:
        """The credential the attempt went with (its answers may report a login's windows)."""
        return served_by(self._gateway.runtime.current.registry, attempted.owner, attempted.model,
                         attempted.credential)[1] if attempted else None

    async def _cut(self, stream: _Stream, response: web.StreamResponse, exc: httpx.HTTPError) -> None:
        """The provider's stream failed midway: it ends with an error event in the client's format, and is
        learned as what it was, an answer cut off."""
        log.warning("relay rid=%s provider=%s: the stream failed after %d bytes (%s); it ends with an "
                    "error event", stream.rid, stream.provider, stream.sent, type(exc).__name__)
        failure = ClientError(502, "upstream_stream_failed",
                              "The provider's stream failed before the answer was complete.")
        endpoint = stream.attempted.endpoint if stream.attempted else ""
        if endpoint == "responses" and stream.usage is not None:  # the id the stream was created with
            await response.write(openai_stream_error(failure, endpoint, stream.usage.response_id))
        else:
            await response.write(FAMILIES[stream.api].stream_error(failure, endpoint))
        if stream.attempt:
            learn_attempt(self._gateway.runtime, self._gateway.secrets, stream.attempt, CUT.status, {}, stream.rid,
                          failure=CUT)

    def _ended(self, stream: _Stream, body: bytes) -> None:
        """An accounted stream's conversation holder and usage record; with log.bodies the record carries the
        prompt as it went to the provider (a stream's answer is not logged)."""
        account, usage = stream.account, stream.usage
        if account is None or usage is None:
            return
        gateway = self._gateway
        snapshot = gateway.runtime.current
        answer = Answer(stream.status, stream.attempt, stream.provider, stream.route, stream.first, streamed=True)
        gateway.hold(usage.response_id, account.holder(answer))
        if snapshot.settings.log_bodies:
            account.show_prompt(body)
        account.close(gateway.accounting, snapshot.registry, stream.api.value, answer, gateway.runtime.clock(),
                      usage.usage)


def no_answer(exc: httpx.HTTPError) -> UpstreamFailure:
    """What a provider call that got no answer met, in the terms Envoy's own replies use."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return TIMEOUT
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ConnectionRefusedError):
            cause = cause.__cause__ or cause.__context__
        return REFUSED if cause is not None else UNREACHABLE
    return RESET  # the connection closed or broke before an answer


def _reply(api: Api, err: ClientError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=err.status, body=error_body(api, err), content_type="application/json",
                        headers=headers)



def read_timeout(upstream_timeout: float) -> float:
    """The relay's longest wait between two chunks: a little under Envoy's stream idle timeout (also
    upstream_timeout, on both connection managers the stream crosses). Equal, the two timers race and Envoy's
    often wins: it resets the client's stream, a cut the SDK reports as a connection error, instead of the
    error event the relay ends a stalled stream with."""
    return upstream_timeout - min(1.0, upstream_timeout / 10)


def provider_trust(settings: Settings) -> ssl.SSLContext | bool:
    """What the processor's own calls to providers (relayed streams, discovery, probes) trust: `ca_file`, the
    bundle Envoy checks the same providers against, so a provider behind a private CA is reached by both."""
    return ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else True


def upstream_client(settings: Settings) -> httpx.AsyncClient:
    """Calls to providers: their CA bundle, pooled connections, and a read timeout just under Envoy's idle
    timeout between chunks (upstream_timeout): a stalled provider does not hold a handler for ever."""
    verify = provider_trust(settings)
    timeout = httpx.Timeout(connect=10.0, read=read_timeout(settings.upstream_timeout), write=None, pool=None)
    return httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=timeout,
                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))


async def start_relay(settings: Settings, gateway: Gateway, client: httpx.AsyncClient,
                      console: web.Application | None = None,
                      extra: Sequence[web.RouteDef] = ()) -> web.AppRunner:
    """The relay's server; the web console (when given) mounted under /console and the `extra` routes (the
    gauges), matched before the catch-all."""
    app = web.Application(client_max_size=settings.max_request_bytes)
    if console is not None:
        app.add_subapp("/console", console)
    app.add_routes(extra)
    app.router.add_route("*", "/{tail:.*}", Relay(gateway, client, settings.processor_token).handle)
    # A client that goes away cancels its handler (and with it the call to the provider).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    # Envoy opens a connection per stream: a burst of them must wait in the kernel's accept queue (the default
    # 128 drops the rest, and Envoy's connect timeout turns each into a failed attempt).
    site = web.TCPSite(runner, settings.relay.host, settings.relay.port, reuse_address=True,
                       backlog=settings.max_connections)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {settings.relay} (processor.relay_port); is it in use?") from exc
    return runner


async def stop_relay(runner: web.AppRunner) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await runner.cleanup()

