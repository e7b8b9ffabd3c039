"""The real processor's gRPC server, fed generated ext_proc streams: every role, message kind, order and count,
junk included, and streams the client abandons midway.

Property: no stream errors, none hangs, every message gets one answer of its own kind (or an immediate response
with an error status and a JSON body in a client API's envelope), the processor ends a stream exactly when Envoy
would send nothing more (judged by a model of Envoy's filter of its own, below), nothing the processor sets could
break the request (header values without CR, LF or NUL; a rewritten body that is JSON with its length), and the
server serves a plain request afterwards.

Size: half the Hypothesis profile's max_examples batches of 25 streams: 1,250 streams by default (a few seconds),
50,000 with `--hypothesis-profile=long`. The run's seed is in pytest's header (tests/seeding.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.bootstrap import build_bootstrap
from extproc.core.headers import ATTEMPT_ROLE, PROCESSOR_TOKEN_HEADER, PROVIDER_HEADER, REAUTH_ROLE, ROLE_HEADER
from extproc.request.plan import HOST_METADATA, LOGIN_KEY, PLAN_KEY, PLAN_NAMESPACE
from extproc.runner import Processor, processor
from tests.unit.helpers import model
from tests.unit.helpers import settings as make_settings

TOKEN = "fuzz-processor-token-0123456789"
BATCH = 25  # streams per generated example, sent concurrently
STREAM_TIMEOUT = 20.0  # s: a stream still open by then hangs
KINDS = ("request_headers", "request_body", "request_trailers", "response_headers", "response_body",
         "response_trailers")
MODELS = ("oa-chat", "an-chat", "ge-chat", "chat-alias", "no-such-model", "", "openai/oa-chat", "a/../b")
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages",
         "/v1/messages/count_tokens", "/v1beta/models/ge-chat:generateContent",
         "/v1beta/models/ge-chat:streamGenerateContent?alt=sse", "/v1beta/models/ge-chat:countTokens",
         "/v1beta/models/ge-chat:embedContent", "/v1beta/models/ge-chat:batchEmbedContents?key=client-key",
         "/v1beta/models/chat-alias:generateContent", "/v1beta/models/..%2F..%2Fx:generateContent",
         "/v1beta/models/:generateContent", "/v1beta/models/a/b:generateContent", "/v1/models", "/v1/models/oa-chat",
         "/v1/models/x:y", "/healthz", "/auth/accounts", "/", "", "*", "/v1/chat/completions?x=%zz",
         "/v1/messages/batches", "/v1alpha/x")
METHODS = ("POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS", "", "post", "P\u00d6ST")
HEADER_NAMES = ("content-type", "content-length", "content-encoding", "authorization", "x-api-key", "x-goog-api-key",
                "api-key", "anthropic-version", "anthropic-beta", "x-request-id", "x-envoy-attempt-count",
                "x-envoy-max-retries", "x-extproc-provider", "x-extproc-model", "x-extproc-handled",
                "x-extproc-attempt", "x-extproc-api", "x-extproc-login", "x-extproc-stream", "accept-encoding",
                ":authority", ":scheme", "x-stainless-lang")
HEADER_VALUES = (b"application/json", b"text/plain", b"gzip", b"identity", b"1", b"2", b"-1", b"99",
                 b"Bearer sk-client", b"openai", b"anthropic", b"", b"\xc3\x28", "\u202e".encode())


@dataclass
class Stream:
    """One generated ext_proc stream: who opens it, and the messages it sends."""

    role: str | None
    token: str | None
    messages: list[pb.ProcessingRequest]
    abandon_after: int | None = None  # the client goes away after this many answers (Envoy's stream reset)
    half_close: bool = True  # after the last message, the client says it is done


@dataclass
class Tally:
    streams: int = 0
    sent: dict[str, int] = field(default_factory=dict)  # messages, by kind
    outcomes: dict[str, int] = field(default_factory=dict)  # streams, by what they came to


# ---------------------------------------------------------------- the server


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


@dataclass
class Server:
    loop: asyncio.AbstractEventLoop
    proc: Processor
    channel: grpc.aio.Channel
    stub: pb_grpc.ExternalProcessorStub
    plans: list[str]  # real plans, from router-level answers: the attempt streams' metadata
    filters: dict[str | None, Filter]  # what Envoy is told, per processor role (None: the router-level filter)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = _free_ports(2)
    store = Path(tmp_path_factory.mktemp("fuzz")) / "accounts.json"
    cfg = make_settings(
        providers={name: {"api_key": f"sk-{name}-fuzz", "base_url": "http://127.0.0.1:9"}
                   for name in ("openai", "anthropic", "gemini")},
        models=[model("oa-chat", "openai"), model("an-chat", "anthropic"), model("ge-chat", "gemini"),
                model("oa-embed", "openai", mode="embedding")],
        aliases={"chat-alias": "oa-chat"}, fallbacks={"oa-chat": ["an-chat", "ge-chat"]},
        processor={"address": "127.0.0.1", "port": base, "relay_port": base + 1, "token": TOKEN},
        discovery=False, auth={"store": str(store)}, max_request_bytes=4 * 1024 * 1024)
    loop = asyncio.new_event_loop()
    running = processor(cfg)

    async def start() -> Server:
        proc = await running.__aenter__()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{base}", options=[
            ("grpc.max_send_message_length", 8 * 1024 * 1024), ("grpc.max_receive_message_length", 8 * 1024 * 1024)])
        stub = pb_grpc.ExternalProcessorStub(channel)
        plans = []
        for path, body in (("/v1/chat/completions", {"model": "chat-alias", "messages": []}),
                           ("/v1/messages", {"model": "an-chat", "max_tokens": 5, "messages": []}),
                           ("/v1beta/models/ge-chat:generateContent", {"contents": []})):
            answers, _ = await _drive(stub, Stream(None, TOKEN, _valid_walk(path, body)))
            plans.append(answers[1].dynamic_metadata.fields[PLAN_NAMESPACE].struct_value.fields[PLAN_KEY]
                         .string_value)
        return Server(loop, proc, channel, stub, plans, envoy_filters(build_bootstrap(cfg)))

    started = loop.run_until_complete(start())
    yield started

    async def stop() -> None:
        await started.channel.close()
        await running.__aexit__(None, None, None)

    loop.run_until_complete(stop())
    loop.close()


# ---------------------------------------------------------------- messages


def _header_map(pairs: list[tuple[str, bytes]]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v) for k, v in pairs])


def _request_headers(path: str, method: str = "POST", extra: list[tuple[str, bytes]] | None = None,
                     end: bool = False) -> pb.ProcessingRequest:
    pairs = [(":path", path.encode()), (":method", method.encode()), *(extra or [])]
    return pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=_header_map(pairs), end_of_stream=end))


def _valid_walk(path: str, body: dict[str, Any]) -> list[pb.ProcessingRequest]:
    return [_request_headers(path, extra=[("content-type", b"application/json")]),
            pb.ProcessingRequest(request_body=pb.HttpBody(body=orjson.dumps(body), end_of_stream=True))]


SPECIAL_BODIES = (b"", b"{", b"[]", b"null", b'"s"', b"1e400", b'{"model": "\\ud800"}', b"\xff\xfe{}",
                  b'{"model": "oa-chat", "model": "an-chat", "messages": []}',
                  b'{"model": "oa-chat", "mod\\u0065l": "x", "messages": []}',
                  b'{"model": "chat-alias", "messages": [], "x": ' + b"[" * 300 + b"]" * 300 + b"}",
                  b'{"model": "oa-chat", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                  b'{"model": "oa-chat", "messages": [], "pad": "' + b"a" * (1 << 20) + b'"}')  # parsed in a thread
ATOMS = (None, True, False, 0, -1, 7, 2**63, 2**70, 1.5, -0.0, 1e300, "", "hi", "model", "\u202e\u200b", "\u2028",
         "\U0001f600", "a\x00b", "oa-chat")
KEYS = ("model", "messages", "contents", "input", "stream", "tools", "max_tokens", "requests", "reasoning",
        "generationConfig", "thinking", "system", "role", "content", "type", "image_url", "inline_data", "x")
REALISTIC = (
    {"model": "chat-alias", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    {"model": "oa-chat", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"model": "an-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "on"}},
    {"model": "oa-embed", "input": ["a", "b"]},
    {"model": "openai/oa-chat", "input": "hi", "previous_response_id": "r1"},
    {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 9}},
    {"requests": [{"model": "models/x", "content": {"parts": [{"text": "a"}]}}]},
)


def _value(rnd: random.Random, depth: int = 0) -> Any:
    """A random JSON value: atoms JSON allows (integers past 64 bits, odd Unicode), a few levels deep."""
    pick = rnd.random()
    if depth >= 3 or pick < 0.5:
        return rnd.choice(ATOMS) if rnd.random() < 0.8 else "".join(chr(rnd.randint(1, 0xD7FF)) for _ in range(4))
    if pick < 0.75:
        return [_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {rnd.choice(KEYS): _value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}


def _body(rnd: random.Random) -> bytes:
    pick = rnd.random()
    if pick < 0.25:
        return json.dumps(rnd.choice(REALISTIC)).encode()
    if pick < 0.55:  # the standard library writes what orjson cannot: integers past 64 bits
        doc = {key: _value(rnd) for key in rnd.sample(KEYS, rnd.randint(0, 4))}
        if rnd.random() < 0.7:
            doc["model"] = rnd.choice(MODELS) if rnd.random() < 0.8 else _value(rnd)
        return json.dumps(doc).encode()
    if pick < 0.75:  # JSON, then cut and spliced
        raw = json.dumps(rnd.choice(REALISTIC)).encode()
        cut = rnd.randint(0, len(raw))
        return raw[:cut] + rnd.randbytes(rnd.randint(0, 3)) + raw[cut + rnd.randint(0, 3):]
    if pick < 0.85:
        return rnd.randbytes(rnd.randint(0, 64))
    return rnd.choice(SPECIAL_BODIES)


def _headers(rnd: random.Random) -> list[tuple[str, bytes]]:
    """Header values as Envoy passes them: any bytes but CR, LF and NUL (its codec refuses those)."""
    pairs = []
    for _ in range(rnd.randint(0, 5)):
        name = rnd.choice(HEADER_NAMES) if rnd.random() < 0.85 else "".join(rnd.choices("abcxyz-:0", k=5))
        value = rnd.choice(HEADER_VALUES) if rnd.random() < 0.6 else \
            bytes(b for b in rnd.randbytes(rnd.randint(0, 12)) if b not in (10, 13, 0))
        pairs.append((name, value))
    return pairs


def _message(rnd: random.Random, kind: str) -> pb.ProcessingRequest:
    end = rnd.random() < 0.5
    if kind == "request_headers":
        path = rnd.choice(PATHS) if rnd.random() < 0.85 else "".join(chr(rnd.randint(32, 0x2FF)) for _ in range(9))
        return _request_headers(path, rnd.choice(METHODS), _headers(rnd), end)
    if kind in ("request_body", "response_body"):
        return pb.ProcessingRequest(**{kind: pb.HttpBody(body=_body(rnd), end_of_stream=end)})
    if kind == "response_headers":
        pairs = [(":status", rnd.choice((b"200", b"429", b"500", b"401", b"x"))), *_headers(rnd)]
        return pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=_header_map(pairs), end_of_stream=end))
    return pb.ProcessingRequest(**{kind: pb.HttpTrailers(trailers=_header_map(_headers(rnd)))})


def _with_metadata(message: pb.ProcessingRequest, plan: str | None, host: str | None, login: str | None
                   ) -> pb.ProcessingRequest:
    """An attempt's or a reauth's request headers carry the plan, the endpoint Envoy picked, the login."""
    fields = message.metadata_context.filter_metadata[PLAN_NAMESPACE].fields
    if plan is not None:
        fields[PLAN_KEY].string_value = plan
    if login is not None:
        fields[LOGIN_KEY].string_value = login
    if host is not None:
        attributes = message.attributes["envoy.filters.http.ext_proc"]
        attributes.fields[HOST_METADATA].CopyFrom(struct_pb2.Value(string_value=host))
    return message


def _host(provider: str) -> str:
    return f'filter_metadata {{ key: "{PLAN_NAMESPACE}" value {{ fields {{ key: "provider" value {{ ' \
           f'string_value: "{provider}" }} }} }} }}'


@st.composite
def streams(draw: st.DrawFn, plans: list[str]) -> Stream:
    """Hypothesis draws each stream's shape (who opens it, which messages in which order, how it ends) and a
    seed; the seed fills in paths, headers and bodies (cheaply: hypothesis' own draws cost too much for 10,000
    streams in a minute). A failing example prints both, so it replays exactly."""
    role = draw(st.sampled_from((None, None, None, ATTEMPT_ROLE, REAUTH_ROLE, "junk-role")))
    token = draw(st.sampled_from((TOKEN,) * 18 + (None, "wrong-token-0123456789")))
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=6))
    envoy_order = draw(st.booleans())  # most of the time Envoy's own order: headers, the body, then the rest
    abandon = draw(st.none() | st.integers(0, 7))
    half_close = draw(st.booleans())
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    msgs = [_message(rnd, kind) for kind in kinds]
    if envoy_order:
        msgs = [_request_headers(rnd.choice(PATHS), "POST", _headers(rnd)),
                pb.ProcessingRequest(request_body=pb.HttpBody(body=_body(rnd), end_of_stream=True)), *msgs]
    if role is not None and msgs and msgs[0].WhichOneof("request") == "request_headers":
        plan = rnd.choice([*plans, None, "", "{}", "not json", '{"path": 1}'])
        host = rnd.choice((None, _host("openai"), _host("anthropic"), _host("gemini"), _host("nope"),
                           "not a text proto {", ""))
        _with_metadata(msgs[0], plan, host, rnd.choice((None, "", "openai:key1", "claude:someone")))
    return Stream(role, token, msgs, abandon if abandon is None or abandon < len(msgs) else None, half_close)


# ---------------------------------------------------------------- the judge's own model of Envoy's ext_proc filter
#
# Written from the ext_proc protocol (ProcessingMode and ProcessingResponse.mode_override in Envoy's API, and how
# the filter's processor states read them), never from the processor's code: a filter sends a part's headers
# unless their mode is SKIP (DEFAULT sends them), its trailers only when SEND (DEFAULT skips them), and its body
# unless NONE; a BUFFERED body is one message, a body in any other mode comes in chunks until one says
# end_of_stream. A mode_override is taken (when the filter allows overrides) from the answer to a headers message
# only, and replaces the whole mode: a field it leaves unset reads as DEFAULT (NONE for bodies). The request's
# parts come first; once the request ended (a message with end_of_stream, or its trailers) only the answer's
# parts can follow, and once the answer ended nothing can.

REQUEST_PARTS = ("request_headers", "request_body", "request_trailers")
RESPONSE_PARTS = ("response_headers", "response_body", "response_trailers")
_ModePb = processing_mode_pb2.ProcessingMode


@dataclass(frozen=True)
class Filter:
    """One ext_proc filter as the bootstrap configures it: its mode, one name per part, and whether it takes
    the processor's overrides."""

    mode: Mapping[str, str]
    overridable: bool


def _field(part: str) -> str:
    return part.replace("_headers", "_header").replace("_trailers", "_trailer") + "_mode"


def envoy_filters(bootstrap: Any) -> dict[str | None, Filter]:
    """Every ext_proc filter of the rendered Envoy config, by the role its gRPC metadata names (None: none)."""
    found: dict[str | None, Filter] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("@type", "")).endswith(".ExternalProcessor"):
                metadata = {m["key"]: m["value"] for m in node["grpc_service"].get("initial_metadata", [])}
                configured = node.get("processing_mode", {})
                seen = Filter({part: configured.get(_field(part), "NONE" if part.endswith("_body") else "DEFAULT")
                               for part in (*REQUEST_PARTS, *RESPONSE_PARTS)}, bool(node.get("allow_mode_override")))
                role = metadata.get(ROLE_HEADER)
                assert found.setdefault(role, seen) == seen, f"two {role} filters configured differently"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bootstrap)
    return found


def _overridden(override: processing_mode_pb2.ProcessingMode) -> dict[str, str]:
    names = {}
    for part in (*REQUEST_PARTS, *RESPONSE_PARTS):
        enum = _ModePb.BodySendMode if part.endswith("_body") else _ModePb.HeaderSendMode
        names[part] = enum.Name(getattr(override, _field(part)))
    return names


def _sends(mode: Mapping[str, str], part: str) -> bool:
    if part.endswith("_headers"):
        return mode[part] != "SKIP"
    if part.endswith("_trailers"):
        return mode[part] == "SEND"
    return mode[part] != "NONE"


def envoy_may_send_more(message: pb.ProcessingRequest, mode: Mapping[str, str]) -> bool:
    """Whether the filter, in `mode`, can send another message on the stream once this one is answered."""
    kind = message.WhichOneof("request")
    ends = kind.endswith("_trailers") or bool(getattr(message, kind).end_of_stream)  # this side is over
    if kind.endswith("_body") and not ends and mode[kind] not in ("NONE", "BUFFERED"):
        return True  # the next chunk of this body
    side = REQUEST_PARTS if kind in REQUEST_PARTS else RESPONSE_PARTS
    still = [] if ends else list(side[side.index(kind) + 1:])
    if side is REQUEST_PARTS:
        still += RESPONSE_PARTS
    return any(_sends(mode, part) for part in still)


def modes_after_each_answer(stream: Stream, answers: list[pb.ProcessingResponse], envoy: Filter
                            ) -> list[Mapping[str, str]]:
    """The filter's mode once each answer is in: an override taken as Envoy takes it, ignored as it ignores it."""
    mode: Mapping[str, str] = envoy.mode
    modes = []
    for message, answer in zip(stream.messages, answers, strict=False):
        if answer.HasField("mode_override") and envoy.overridable and message.WhichOneof("request").endswith(
                "_headers"):
            mode = _overridden(answer.mode_override)
        modes.append(mode)
    return modes


# ---------------------------------------------------------------- driving a stream and judging its answers


async def _drive(stub: pb_grpc.ExternalProcessorStub, stream: Stream
                 ) -> tuple[list[pb.ProcessingResponse], grpc.StatusCode | None]:
    """Lockstep, as Envoy does: a message, its answer; an immediate response ends the stream."""
    metadata = []
    if stream.token is not None:
        metadata.append((PROCESSOR_TOKEN_HEADER, stream.token))
    if stream.role is not None:
        metadata.append((ROLE_HEADER, stream.role))
    call = stub.Process(metadata=tuple(metadata))
    answers: list[pb.ProcessingResponse] = []
    for message in stream.messages:
        if stream.abandon_after is not None and len(answers) == stream.abandon_after:
            call.cancel()
            return answers, None
        try:
            await call.write(message)
        except grpc.aio.AioRpcError as err:
            if answers and err.code() is grpc.StatusCode.INTERNAL:  # a write after the processor ended it
                return answers, await _ended_by_the_processor(call)
            assert err.code() in (grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED), err.details()
            return answers, err.code()
        try:
            answer = await call.read()
        except grpc.aio.AioRpcError as err:
            assert err.code() in (grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED), err.details()
            return answers, err.code()
        if answer is grpc.aio.EOF:
            break
        answers.append(answer)
        if answer.WhichOneof("response") == "immediate_response":
            break
    if stream.half_close:
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            await call.done_writing()
    else:
        call.cancel()
        return answers, None
    code = await call.code()
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED), await call.details()
    return answers, code


async def _ended_by_the_processor(call: grpc.aio.StreamStreamCall) -> grpc.StatusCode:
    """The processor ends a stream once Envoy would send nothing more (a generated stream sends on): the write
    after that fails on the client's side; the stream itself ended OK."""
    code = await call.code()
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL), await call.details()
    return grpc.StatusCode.OK


_BAD_HEADER_BYTES = (b"\r", b"\n", b"\x00")


def _check_mutation(kind: str, answer: pb.ProcessingResponse) -> None:
    part = getattr(answer, kind)
    common = part.response if kind in ("request_headers", "request_body", "response_headers", "response_body") \
        else None
    mutation = common.header_mutation if common is not None else part.header_mutation
    for option in mutation.set_headers:
        value = option.header.raw_value or option.header.value.encode()
        assert option.header.key and option.header.key == option.header.key.lower(), option
        assert not any(bad in value for bad in _BAD_HEADER_BYTES), option
        if option.header.key == ":path":
            assert value.startswith(b"/"), option
    if common is None:
        return
    if common.HasField("body_mutation") and common.body_mutation.body:
        body = common.body_mutation.body
        if kind == "request_body":  # the rewritten request: JSON, with its length
            orjson.loads(body)
            lengths = [o.header.raw_value for o in mutation.set_headers if o.header.key == "content-length"]
            assert lengths == [str(len(body)).encode()], lengths


def _check_reply(reply: pb.ImmediateResponse) -> None:
    status = reply.status.code
    assert 400 <= status <= 599, reply
    assert reply.details.startswith("extproc") and reply.details != "extproc_internal_error", reply
    headers = {o.header.key: o.header.raw_value for o in reply.headers.set_headers}
    assert headers.get("content-type") == b"application/json", headers
    doc = orjson.loads(reply.body)
    error = doc["error"]
    assert isinstance(error["message"], str) and error["message"]
    if doc.get("type") == "error":  # Anthropic
        assert isinstance(error["type"], str) and error["type"]
    elif "status" in error:  # Gemini
        assert error["code"] == status and isinstance(error["status"], str)
    else:  # OpenAI
        assert {"type", "code", "param"} <= set(error) and isinstance(error["code"], str)


def _judge(stream: Stream, answers: list[pb.ProcessingResponse], code: grpc.StatusCode | None, envoy: Filter
           ) -> str:
    """What the stream came to: "refused" (no token), "replied" (an immediate response), "routed" (a request
    body answered with a provider), else "passed"; after checking every answer against the model above."""
    if stream.token != TOKEN:  # refused before any answer (unless the client left first)
        assert answers == [] and code in (grpc.StatusCode.PERMISSION_DENIED, None), (answers, code)
        return "refused"
    assert code in (None, grpc.StatusCode.OK), f"the stream failed: {code} after {len(answers)} answers"
    assert len(answers) <= len(stream.messages)
    replied = bool(answers) and answers[-1].WhichOneof("response") == "immediate_response"
    modes = modes_after_each_answer(stream, answers, envoy)
    # Envoy ignores an override in the answer to a body or trailers; the processor then keeps the stream open
    # to the end (it cannot be sure what Envoy took), so the check that it ends streams applies until then.
    unsure = next((i for i, (message, answer) in enumerate(zip(stream.messages, answers, strict=False))
                   if answer.HasField("mode_override") and not message.WhichOneof("request").endswith("_headers")),
                  len(answers))
    for i in range(min(unsure, len(answers) - 1)):  # it answered a message after this one: Envoy had more to send
        assert envoy_may_send_more(stream.messages[i], modes[i]), \
            f"the stream stayed open after message {i} ({stream.messages[i].WhichOneof('request')}), when Envoy " \
            f"had nothing more to send"
    if code is grpc.StatusCode.OK and len(answers) < len(stream.messages) and not replied:
        # ended by the processor before the generated stream ran out: only once Envoy had nothing more to send
        assert answers and not envoy_may_send_more(stream.messages[len(answers) - 1], modes[-1]), \
            f"the processor ended the stream after {len(answers)} of {len(stream.messages)} messages"
    for message, answer in zip(stream.messages, answers, strict=False):
        kind, answered = message.WhichOneof("request"), answer.WhichOneof("response")
        assert answered in (kind, "immediate_response"), (kind, answered)
        if answered == "immediate_response":
            _check_reply(answer.immediate_response)
        else:
            _check_mutation(kind, answer)
    if answers and answers[-1].WhichOneof("response") == "immediate_response":
        return "replied"
    routed = any(o.header.key == PROVIDER_HEADER for a in answers if a.WhichOneof("response") == "request_body"
                 for o in a.request_body.response.header_mutation.set_headers)
    return "routed" if routed else "passed"


async def _run_batch(server: Server, batch: list[Stream]) -> list[str]:
    async def one(stream: Stream) -> str:
        answers, code = await asyncio.wait_for(_drive(server.stub, stream), STREAM_TIMEOUT)
        return _judge(stream, answers, code, server.filters.get(stream.role, server.filters[None]))

    return await asyncio.gather(*(one(s) for s in batch))


# ---------------------------------------------------------------- the property


def test_generated_streams_never_break_the_processor(server: Server) -> None:
    tally = Tally()
    batches = max(1, settings.default.max_examples // 2)  # the profile's: 50 by default, 2,000 when long

    @settings(max_examples=batches, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.lists(streams(server.plans), min_size=BATCH, max_size=BATCH))
    def run(batch: list[Stream]) -> None:
        for outcome in server.loop.run_until_complete(_run_batch(server, batch)):
            tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
        tally.streams += len(batch)
        for stream in batch:
            for message in stream.messages:
                kind = message.WhichOneof("request")
                tally.sent[kind] = tally.sent.get(kind, 0) + 1

    run()
    assert tally.streams >= batches * BATCH
    assert set(tally.sent) == set(KINDS)  # every kind of message was sent
    # and the streams came to every end: refused, replied, routed to a provider, let through
    least = min(tally.outcomes.get(o, 0) for o in ("refused", "replied", "routed", "passed"))
    assert least >= tally.streams // 100, tally.outcomes  # each at least 1% of the streams
    server.loop.run_until_complete(_still_serving(server))


async def _still_serving(server: Server) -> None:
    """After all of it: a plain request is routed, attempts are built, and gRPC health says SERVING."""
    answers, code = await _drive(server.stub, Stream(None, TOKEN, _valid_walk(
        "/v1/chat/completions", {"model": "chat-alias", "messages": [{"role": "user", "content": "hi"}]})))
    assert code is grpc.StatusCode.OK and [a.WhichOneof("response") for a in answers] == ["request_headers",
                                                                                         "request_body"]
    routed = {o.header.key: o.header.raw_value for o in answers[1].request_body.response.header_mutation.set_headers}
    assert routed[PROVIDER_HEADER] == b"openai" and routed["authorization"] == b"Bearer sk-openai-fuzz"
    first = _valid_walk("/v1/chat/completions", {"model": "chat-alias", "messages": []})[0]
    attempt = _with_metadata(first, server.plans[0], _host("anthropic"), None)
    attempt.request_headers.headers.headers.append(base_pb2.HeaderValue(key="x-envoy-attempt-count", raw_value=b"2"))
    answers, code = await _drive(server.stub, Stream(ATTEMPT_ROLE, TOKEN, [attempt, pb.ProcessingRequest(
        request_body=pb.HttpBody(body=b'{"model": "chat-alias", "messages": []}', end_of_stream=True))]))
    assert code is grpc.StatusCode.OK and [a.WhichOneof("response") for a in answers] == ["request_headers",
                                                                                         "request_body"]
    built = {o.header.key: o.header.raw_value for o in answers[1].request_body.response.header_mutation.set_headers}
    assert (built[PROVIDER_HEADER], built["authorization"]) == (b"anthropic", b"Bearer sk-anthropic-fuzz")
    health = health_pb2_grpc.HealthStub(server.channel)
    status = await health.Check(health_pb2.HealthCheckRequest(service="envoy.service.ext_proc.v3.ExternalProcessor"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
