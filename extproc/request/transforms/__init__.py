"""Provider-specific reshaping of a request and of its answer, selected by name from provider and login data.

The generic path (model rewrite, credential, headers) knows none of them: a transform takes the request
as it is about to leave and changes it, and may give the exchange a shaper for the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from extproc.core.errors import ClientError
from extproc.core.headers import ROUTE_HEADER, UPSTREAM_API_HEADER
from extproc.core.providers import Api
from extproc.core.resolve import Decision
from extproc.formats import Endpoint, error_body
from extproc.formats.base import JsonObject
from extproc.formats.gemini import unwrapped
from extproc.formats.sse import EventSplitter
from extproc.request.transforms import copilot
from extproc.request.transforms.codex import codex_refusal, codex_request
from extproc.request.transforms.converse import answer_maker, converse_applies, converse_refusal, rewrite
from extproc.request.transforms.invoke import (
    CloudError,
    Unchanged,
    cloud_betas,
    invoke_applies,
    invoke_refusal,
    reshape,
    reshape_count,
)
from extproc.translate.transform import (
    API_OF,
    CollectedAnswer,
    CollectedResponse,
    WholeAnswer,
    read_request,
    stream_translator,
    write_request,
)


@dataclass(slots=True)
class Outgoing:
    """The request as it will leave, built up step by step."""

    rest: str  # the path after the provider's API prefix, query included
    doc: JsonObject  # the body, decoded
    changed: bool  # the body differs from the client's
    headers: dict[str, str]  # set on the request (overwriting)
    api: Api | None = None  # the API it leaves in, when translated (None: the client's)
    hides_usage: bool = False  # the client's stream did not ask for its usage (an earlier attempt may have)
    client_headers: Mapping[str, str] = field(default_factory=dict)  # as the client sent them (read, never set)
    answers: list[Callable[[bool, int], Shaper]] = field(default_factory=list)  # (streamed, status) → shaper
    removed: list[str] = field(default_factory=list)  # client headers taken off (a transform's `headers`)
    segment: str | None = None  # in place of the model's served name in the provider's path (None: that name)


class Shaper(Protocol):
    """Reshapes an answer's body as it passes; one per exchange (it may hold a split event). The attempt reads
    what it says of the answer it makes: a stream it collects goes out whole, as JSON, and one that failed goes out
    with the status of the error it became."""

    @property
    def collects(self) -> bool: ...  # a stream becomes one JSON answer, at its end

    @property
    def failed_status(self) -> int | None: ...  # the stream it collects failed: the client's answer is this error

    def feed(self, chunk: bytes, end: bool) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Transform:
    request: Callable[[Outgoing, Endpoint, Decision], None]
    answer: Callable[[bool, int], Shaper] | None = None  # (streamed, status) → the shaper for this answer
    headers: tuple[str, ...] = ()  # request headers it may set
    reshapes: bool = False  # its request step hands the answer a shaper of its own (Outgoing.answers)
    # Why a request cannot go to a decision's upstream (None: it can).
    refuses: Callable[[Endpoint, Mapping[str, Any], Decision], str | None] | None = None


def asks_without_usage(endpoint: Endpoint, doc: Mapping[str, Any]) -> bool:
    """An OpenAI-style stream that does not ask for its usage (`stream_options.include_usage`): the provider
    would send none, and the client does not expect the extra chunk that carries it."""
    if endpoint.api is not Api.OPENAI or endpoint.name not in ("chat", "completions") or doc.get("stream") is not True:
        return False
    options = doc.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage") is True)


def selected(decision: Decision, streams: bool | None = None) -> tuple[Transform, ...]:
    """The transforms data selects for a decision: translation when its provider does not speak the client's
    API (or only streams, and the request may not: `streams` None when that is not known yet), then the
    upstream's request shape."""
    collects = decision.provider.stream_only and streams is not True
    target = translates(decision)
    leaves_in = target[0] if target else API_OF.get(decision.endpoint)
    leaves_as = target[1] if target else decision.endpoint
    names = (["translate"] if collects or target else []) + \
        (["drop_fields"] if decision.provider.drop_fields else []) + \
        (["invoke"] if leaves_in is not None and invoke_applies(decision, leaves_in) else []) + \
        (["converse"] if converse_applies(decision, leaves_as) else []) + \
        ([decision.provider.transform] if decision.provider.transform else [])
    return tuple(TRANSFORMS[name] for name in names)


def refusal(decision: Decision, endpoint: Endpoint, doc: Mapping[str, Any]) -> str | None:
    """Why the transforms of a decision cannot send this request as it was asked (None: they can)."""
    return next((why for t in selected(decision) if t.refuses and (why := t.refuses(endpoint, doc, decision))),
                None)


def _drop_fields(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """The body fields the provider refuses (`drop_fields`), taken off whatever the client sent."""
    for name in decision.provider.drop_fields:
        if name in out.doc:
            del out.doc[name]
            out.changed = True


def translates(decision: Decision) -> tuple[Api, str] | None:
    """The provider API and endpoint a decision's request is translated into; None when it goes as it is."""
    api, listed = API_OF.get(decision.endpoint), decision.model.endpoints
    if api is None or decision.provider.speaks(api, decision.endpoint, listed):
        return None
    return decision.provider.target(api, decision.endpoint, listed)


# ---------------------------------------------------------------- codeassist (Gemini CLI logins)

def _codeassist_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """Code Assist's shape of a Gemini call: POST /v1internal:{method} with {model, project, request}."""
    path, _, query_string = out.rest.partition("?")  # the Gemini call as it would leave (translated or not)
    method = path.rpartition(":")[2]
    query = "alt=sse" if "alt=sse" in query_string.split("&") else ""  # else a JSON array, as asked
    wrapped: JsonObject = {"model": decision.model.id, "request": out.doc}
    if decision.credential.project:
        wrapped["project"] = decision.credential.project
    out.rest = f"/v1internal:{method}" + (f"?{query}" if query else "")
    out.doc, out.changed = wrapped, True
    out.headers["accept-encoding"] = "identity"  # the answer is unwrapped here: it must come uncompressed


def unwrap_codeassist(payload: bytes) -> bytes:
    """Code Assist answers {"response": {…}, …}; Gemini clients expect the inner object."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    inner = unwrapped(doc)
    if inner is not doc:
        return orjson.dumps(inner)
    if isinstance(doc, list):  # a JSON array of chunks (streamGenerateContent without alt=sse)
        return orjson.dumps([d["response"] if isinstance(d, dict) and "response" in d else d for d in doc])
    return payload


class WholeUnwrapper:
    """A buffered answer: unwrapped once, whole."""

    collects, failed_status = False, None

    def feed(self, chunk: bytes, end: bool) -> bytes:
        return unwrap_codeassist(chunk)


class SseUnwrapper:
    """Unwraps Code Assist's SSE events as they stream, holding back an event split across chunks."""

    collects, failed_status = False, None

    def __init__(self) -> None:
        self._events = EventSplitter()

    def feed(self, chunk: bytes, end: bool) -> bytes:
        out = []
        for event in self._events.feed(chunk, end):
            lines = [line.rstrip(b"\r") for line in event.split(b"\n")]
            lines = [b"data: " + unwrap_codeassist(line[5:].strip()) if line.startswith(b"data:") else line
                     for line in lines]
            out.append(b"\r\n".join(lines) + b"\r\n\r\n")
        return b"".join(out)


def _codeassist_answer(streamed: bool, status: int) -> Shaper:
    return SseUnwrapper() if streamed else WholeUnwrapper()


# ---------------------------------------------------------------- invoke (Claude on a cloud)

def _invoke_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """Anthropic's Messages request as the cloud's call on the model's path; its errors as Anthropic's (reshaped
    before a translation reads them: the maker goes first)."""
    spec = decision.provider.invoke
    if spec is None or (out.api or endpoint.api) is not Api.ANTHROPIC:
        return
    flags = cloud_betas(out.client_headers.get("anthropic-beta"), spec, endpoint.counts_tokens)
    if endpoint.counts_tokens:  # a token count (refused before now on a cloud that counts none)
        out.segment, out.rest = reshape_count(out.doc, spec, flags, decision.provider.served_name(decision.model.id))
    else:
        out.rest = reshape(out.doc, spec, flags)
    out.changed = True
    if spec.betas is None and flags:  # the header carries them: the ones the cloud takes
        out.headers["anthropic-beta"] = ",".join(flags)
    elif "anthropic-beta" in out.client_headers:  # in the body, or none the cloud takes
        out.removed.append("anthropic-beta")
    out.headers["accept-encoding"] = "identity"  # an error is rewritten here: it must come uncompressed

    def answer(streamed: bool, status: int) -> Shaper:
        return CloudError(status, spec) if status >= 400 else Unchanged()

    out.answers.insert(0, answer)


# ---------------------------------------------------------------- converse (a cloud's other models)

def _converse_request(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """OpenAI's chat request as the cloud's Converse call on the model's path; its answer back as OpenAI's (read
    before a translation reads it: the maker goes first)."""
    spec = decision.provider.converse
    if spec is None or (out.api or endpoint.api) is not Api.OPENAI:
        return
    out.doc, out.rest, include_usage = rewrite(out.doc, spec)
    out.changed = True
    out.headers["accept-encoding"] = "identity"  # the answer is rewritten here: it must come uncompressed
    out.answers.insert(0, answer_maker(spec, decision.model.id, include_usage))


# ---------------------------------------------------------------- translate (another API's provider)

def _translate(out: Outgoing, endpoint: Endpoint, decision: Decision) -> None:
    """Another API's provider: the request rewritten in its API. A provider that only streams, asked for a whole
    answer: the request asks for a stream, collected into one answer for the client (`stream_only`)."""
    target = translates(decision)
    streams = "streamGenerateContent" in endpoint.match.string or out.doc.get("stream") is True
    collect = decision.provider.stream_only and not streams and (
        endpoint.name in ("chat", "responses", "messages") and not endpoint.counts_tokens
        or endpoint.name == "gemini" and ":generateContent" in endpoint.match.string)
    if target is None and not collect:
        return
    source, model = endpoint.name, decision.model.id
    target_endpoint = target[1] if target else source
    include_usage = False
    if target is not None:
        ir = read_request(source, out.doc, model, streams)
        include_usage = ir.stream and source == "chat" and not out.hides_usage \
            and not asks_without_usage(endpoint, out.doc)
        out.doc, out.rest = write_request(target_endpoint, replace(ir, stream=ir.stream or collect))
        out.api = target[0]
        out.headers[UPSTREAM_API_HEADER] = target[0].value
        out.headers[ROUTE_HEADER] = f"{decision.route}; translated {source}->{target_endpoint}"
    else:
        out.doc["stream"] = True
    out.changed = True
    out.headers["accept-encoding"] = "identity"  # the answer is rewritten here: it must come uncompressed

    def render(err: ClientError) -> bytes:
        return error_body(endpoint.api, err)

    def answer(streamed: bool, status: int) -> Shaper:
        if streamed and status < 400:
            if collect and source == target_endpoint == "responses":
                return CollectedResponse(render)
            return CollectedAnswer(source, target_endpoint, model, render) if collect else \
                stream_translator(source, target_endpoint, model, include_usage)
        return WholeAnswer(source, target_endpoint, model, status, render)

    out.answers.append(answer)


TRANSFORMS: Mapping[str, Transform] = {
    "translate": Transform(_translate, headers=(UPSTREAM_API_HEADER, ROUTE_HEADER, "accept-encoding"),
                           reshapes=True),
    "codeassist": Transform(_codeassist_request, _codeassist_answer, ("accept-encoding",)),
    "drop_fields": Transform(_drop_fields),
    "invoke": Transform(_invoke_request, headers=("accept-encoding", "anthropic-beta"), reshapes=True,
                        refuses=lambda endpoint, doc, decision: invoke_refusal(endpoint, decision.provider.invoke)),
    "converse": Transform(_converse_request, headers=("accept-encoding",), reshapes=True,
                          refuses=lambda endpoint, doc, decision: converse_refusal(endpoint, doc)),
    "codex": Transform(codex_request, refuses=lambda endpoint, doc, decision: codex_refusal(endpoint, doc)),
    "copilot": Transform(copilot.copilot_request, headers=copilot.HEADERS),
}
PROVIDER_TRANSFORMS = ("codeassist", "codex", "copilot")  # what `providers.X.transform` may name
