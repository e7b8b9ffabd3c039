"""The same requests through each path a request can take, as one table: a row is a client's request and what
must be seen of it (the answer, the one request the provider got, the usage record), and it runs through every
path it applies to:

- fast: a request of a model asked for before, whole or streamed, which Envoy serves by itself (no processor
  message), its client key checked by Envoy;
- full: the processor routes it (`fast_path: false`), and checks the key;
- relay: a streamed answer, which passes through the processor's relay (the relay writes its usage record).

Each path configuration is a stack of the module, against the module's fakes; a new API, provider or routing
rule is one more row.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from extproc.fast.routes import FAST_SUFFIX as FAST  # how x-extproc-route ends on an answer Envoy served alone
from tests.conftest import SECRETS, Stack, provider_config
from tests.e2e.catalog import CHAT, CLIENT_KEY
from tests.e2e.catalog import MODELS as SHARED_MODELS
from tests.fakes import FakeProvider
from tests.waits import eventually

MODELS: list[dict[str, Any]] = [
    *SHARED_MODELS,
    # Served only in the Anthropic API: an OpenAI client's request is translated. No vision, so never the
    # capability match of a vision request.
    {"id": "an-only", "provider": "an-only", "context_window": 100000, "capabilities": ["tools", "streaming"]},
]


def config(fakes: dict[str, FakeProvider], **path: Any) -> dict[str, Any]:
    """Built-in providers on their fakes (mistral without a key), one that speaks Anthropic's API alone, and a
    few routing rules; `path` adds what sets the path configuration."""
    providers = provider_config(fakes, without=("mistral",))
    providers["an-only"] = {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                            "auth": "x-api-key", "api_key": SECRETS["anthropic"],
                            "headers": {"anthropic-version": "2023-06-01"}}
    return {"providers": providers, "models": MODELS, "strategy": "capability-match",
            "aliases": {"fast": "groq/openai/gpt-oss-20b", "flash": "ge-chat", "sonnet": "an-chat"},
            # A deployment's shape: every request carries a client key, which Envoy checks on the fast path and
            # the processor on the full path; either way the record is the key's.
            "clients": {"keys": [{"name": "paths", "key": CLIENT_KEY}]}, **path}


@pytest.fixture(scope="module")
def full_stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack(config(fakes, fast_path=False))


@pytest.fixture(scope="module")
def fast_stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    # No translation: Anthropic clients' requests may then go fast too (a history that may hold thinking another
    # provider wrote keeps them on the full path). No discovery: a model list read in the middle of a test would
    # republish the routes it is served by.
    return make_module_stack(config(fakes, translation=False, discovery=False))


STACKS = {"fast": "fast_stack", "full": "full_stack", "relay": "full_stack"}


# ---------------------------------------------------------------- client calls


@dataclass(frozen=True)
class Reply:
    """What the client saw: the status (None where the SDK does not say; it raises on an error), the response
    headers, and what its SDK handed back (a text, a vector, a stream's events)."""

    status: int | None
    headers: Mapping[str, str]
    result: Any


Call = Callable[[str, str], Reply]  # given the gateway's URL and a request id, one request as a client makes it


def _openai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)


def _anthropic(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)


def rid_header(rid: str) -> dict[str, str]:
    return {"x-request-id": rid}


def openai_chat(model: str, messages: list[dict[str, Any]] = CHAT) -> Call:
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).chat.completions.with_raw_response.create(
            model=model, messages=messages, extra_headers=rid_header(rid))  # type: ignore[arg-type]
        return Reply(raw.status_code, raw.headers, raw.parse().choices[0].message.content)
    return call


def openai_chat_whole(model: str) -> Call:
    """The answer's text, why it stopped and the prompt tokens it reports."""
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).chat.completions.with_raw_response.create(
            model=model, messages=CHAT, max_tokens=20, extra_headers=rid_header(rid))  # type: ignore[arg-type]
        done = raw.parse()
        assert done.usage is not None
        return Reply(raw.status_code, raw.headers,
                     (done.choices[0].message.content, done.choices[0].finish_reason, done.usage.prompt_tokens))
    return call


def openai_chat_stream(model: str, **extra: Any) -> Call:
    """Each chunk as the client read it: its text and [why it stopped], or the usage of a chunk without choices."""
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).chat.completions.with_raw_response.create(
            model=model, messages=CHAT, stream=True, extra_headers=rid_header(rid), **extra)  # type: ignore[arg-type]
        return Reply(raw.status_code, raw.headers, [_chunk(c) for c in raw.parse()])
    return call


def _chunk(chunk: Any) -> str:
    if not chunk.choices:
        return f"usage {chunk.usage.prompt_tokens}/{chunk.usage.completion_tokens}" if chunk.usage else "nothing"
    choice = chunk.choices[0]
    return (choice.delta.content or "") + (f"[{choice.finish_reason}]" if choice.finish_reason else "")


def openai_responses(model: str) -> Call:
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).responses.with_raw_response.create(model=model, input="hi", extra_headers=rid_header(rid))
        return Reply(raw.status_code, raw.headers, raw.parse().output_text)
    return call


def openai_responses_stream(model: str) -> Call:
    """The text, the event types, and the output tokens the completed response reports."""
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).responses.with_raw_response.create(model=model, input="hi", stream=True,
                                                              extra_headers=rid_header(rid))
        events = list(raw.parse())
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = [e.response.usage.output_tokens for e in events if e.type == "response.completed" and e.response.usage]
        return Reply(raw.status_code, raw.headers, (text, [e.type for e in events], done))
    return call


def openai_embeddings(model: str) -> Call:
    def call(url: str, rid: str) -> Reply:
        raw = _openai(url).embeddings.with_raw_response.create(model=model, input="hi", extra_headers=rid_header(rid))
        return Reply(raw.status_code, raw.headers, raw.parse().data[0].embedding)
    return call


def anthropic_messages(model: str) -> Call:
    def call(url: str, rid: str) -> Reply:
        raw = _anthropic(url).messages.with_raw_response.create(
            model=model, max_tokens=100, messages=CHAT, extra_headers=rid_header(rid))  # type: ignore[arg-type]
        return Reply(raw.status_code, raw.headers, raw.parse().content[0].text)  # type: ignore[union-attr]
    return call


def anthropic_messages_whole(model: str) -> Call:
    """With a system prompt: the answer's text and the tokens it reports."""
    def call(url: str, rid: str) -> Reply:
        raw = _anthropic(url).messages.with_raw_response.create(
            model=model, max_tokens=50, system="Be brief.", messages=CHAT,  # type: ignore[arg-type]
            extra_headers=rid_header(rid))
        message = raw.parse()
        return Reply(raw.status_code, raw.headers, (message.content[0].text,  # type: ignore[union-attr]
                                                    message.usage.input_tokens, message.usage.output_tokens))
    return call


def anthropic_messages_stream(model: str) -> Call:
    """The text, why it stopped, and the event types in order."""
    def call(url: str, rid: str) -> Reply:
        raw = _anthropic(url).messages.with_raw_response.create(
            model=model, max_tokens=50, messages=CHAT, stream=True, extra_headers=rid_header(rid))  # type: ignore[arg-type]
        events = list(raw.parse())
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
        stops = [e.delta.stop_reason for e in events if e.type == "message_delta"]
        return Reply(raw.status_code, raw.headers, (text, stops, [e.type for e in events]))
    return call


def anthropic_without_version(model: str) -> Call:
    """Plain HTTP, the way a hand-written client may call: a key but no anthropic-version header."""
    def call(url: str, rid: str) -> Reply:
        response = httpx.post(url + "/v1/messages", headers={"x-api-key": CLIENT_KEY, **rid_header(rid)},
                              json={"model": model, "max_tokens": 5, "messages": CHAT})
        return Reply(response.status_code, response.headers, response.json()["content"][0]["text"])
    return call


def gemini_generate(model: str) -> Call:
    def call(url: str, rid: str) -> Reply:
        client = genai.Client(api_key=CLIENT_KEY, http_options=genai_types.HttpOptions(
            base_url=url, api_version="v1beta", headers=rid_header(rid)))
        result = client.models.generate_content(model=model, contents="hi")
        assert result.sdk_http_response is not None
        return Reply(None, result.sdk_http_response.headers or {}, result.text)
    return call


def gemini_stream(model: str) -> Call:
    """Plain HTTP: each event's text, and the usage the last reports."""
    def call(url: str, rid: str) -> Reply:
        with httpx.stream("POST", f"{url}/v1beta/models/{model}:streamGenerateContent?alt=sse",
                          headers={"x-goog-api-key": CLIENT_KEY, **rid_header(rid)},
                          json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) as response:
            events = [json.loads(line.removeprefix("data: ")) for line in response.iter_lines()
                      if line.startswith("data: ")]
        texts = [part["text"] for e in events for part in e["candidates"][0]["content"]["parts"]]
        return Reply(response.status_code, response.headers, (texts, events[-1].get("usageMetadata")))
    return call


# ---------------------------------------------------------------- the table


def bearer(provider: str) -> str:
    return f"Bearer {SECRETS[provider]}"


def routed(provider: str, model: str, route: str) -> dict[str, str]:
    """The response headers that say where the gateway sent a request, and why (on the full path)."""
    return {"x-extproc-provider": provider, "x-extproc-model": model, "x-extproc-route": route}


def tokens(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


SDK_ANTHROPIC_VERSION = anthropic.Anthropic(api_key="unused").default_headers["anthropic-version"]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
VISION_CHAT = [{"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}]
MESSAGES_EVENTS = ["message_start", "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
                   "message_delta", "message_stop"]
RESPONSES_EVENTS = ["response.created", "response.output_item.added", "response.content_part.added",
                    *["response.output_text.delta"] * 3, "response.output_item.done", "response.completed"]


@dataclass(frozen=True)
class Case:
    """One request, the paths it takes, and what the one provider that gets it must see, the client get back,
    and the usage record say."""

    id: str
    call: Call
    paths: tuple[str, ...]  # fast, full, relay
    provider: str  # the only fake that receives a request, exactly one
    path: str  # where that request arrives
    headers: Mapping[str, str | None]  # headers it carries (None: a header it must not carry)
    body: Mapping[str, Any]  # fields of its JSON body
    reply_headers: Mapping[str, str]  # what the gateway tells the client about the route (on the full path)
    result: Any  # what the client's SDK handed back
    record: Mapping[str, Any]  # fields of the usage record, beyond who served it, the route and the status
    whole_body: bool = False  # `body` is the entire upstream body, not some of its fields
    status: int = 200


PLAIN = ("fast", "full")  # a request in its provider's own API, of a model by its own id: Envoy can serve it alone

CASES = [
    Case("openai-chat-direct-gets-the-injected-key", openai_chat("oa-chat"), PLAIN, "openai",
         "/v1/chat/completions", {"authorization": bearer("openai")},
         {"model": "oa-chat", "messages": CHAT}, whole_body=True,
         reply_headers=routed("openai", "oa-chat", "direct"),
         result="hello from oa-chat", record={**tokens(3, 4), "cost_usd": pytest.approx((3 * 1.0 + 4 * 4.0) / 1e6)}),
    Case("anthropic-direct-gets-x-api-key-and-the-default-version", anthropic_without_version("an-chat"), PLAIN,
         "anthropic", "/v1/messages",
         {"x-api-key": SECRETS["anthropic"], "anthropic-version": "2023-06-01", "authorization": None},
         {"model": "an-chat", "max_tokens": 5, "messages": CHAT}, whole_body=True,
         reply_headers=routed("anthropic", "an-chat", "direct"),
         result="hello from an-chat", record=tokens(3, 4)),
    Case("anthropic-sdk-gets-x-api-key-and-keeps-its-own-version", anthropic_messages("sonnet"), ("full",),
         "anthropic", "/v1/messages",
         {"x-api-key": SECRETS["anthropic"], "anthropic-version": SDK_ANTHROPIC_VERSION, "authorization": None},
         {"model": "an-chat"},
         reply_headers=routed("anthropic", "an-chat", "alias"),
         result="hello from an-chat", record=tokens(3, 4)),
    Case("anthropic-version-defaults-when-the-client-sends-none", anthropic_without_version("sonnet"), ("full",),
         "anthropic", "/v1/messages",
         {"x-api-key": SECRETS["anthropic"], "anthropic-version": "2023-06-01", "authorization": None},
         {"model": "an-chat"},
         reply_headers=routed("anthropic", "an-chat", "alias"),
         result="hello from an-chat", record=tokens(3, 4)),
    Case("alias-rewrites-model-and-path-to-groq", openai_chat("fast"), ("full",), "groq",
         "/openai/v1/chat/completions", {"authorization": bearer("groq")}, {"model": "openai/gpt-oss-20b"},
         reply_headers=routed("groq", "openai/gpt-oss-20b", "alias"),
         result="hello from openai/gpt-oss-20b", record=tokens(3, 4)),
    Case("openai-responses-endpoint", openai_responses("oa-cheap"), ("full",), "openai",
         "/v1/responses", {"authorization": bearer("openai")}, {"model": "oa-cheap", "input": "hi"},
         reply_headers=routed("openai", "oa-cheap", "direct"),
         result="hello from oa-cheap", record=tokens(3, 4)),
    Case("openai-embeddings-endpoint-for-a-prefix-known-model", openai_embeddings("text-embedding-3-small"),
         ("full",), "openai",
         "/v1/embeddings", {"authorization": bearer("openai")}, {"model": "text-embedding-3-small", "input": "hi"},
         reply_headers=routed("openai", "text-embedding-3-small", "direct"),
         result=[0.1, 0.2], record=tokens(2, 0)),
    Case("model-without-credential-falls-back-by-capability", openai_chat("mi-chat", VISION_CHAT), ("full",),
         # mistral has no key; the nearest-priced vision model on a provider speaking OpenAI's API is oa-chat.
         "openai", "/v1/chat/completions", {"authorization": bearer("openai")},
         {"model": "oa-chat", "messages": VISION_CHAT},
         reply_headers=routed("openai", "oa-chat", "fallback:capability-match"),
         result="hello from oa-chat", record=tokens(3, 4)),
    Case("gemini-native-path-is-rewritten", gemini_generate("flash"), ("full",), "gemini",
         "/v1beta/models/ge-chat:generateContent", {"x-goog-api-key": SECRETS["gemini"], "authorization": None},
         {"contents": [{"parts": [{"text": "hi"}], "role": "user"}]},
         reply_headers=routed("gemini", "ge-chat", "alias"),
         result="hello from ge-chat", record=tokens(3, 4)),
    Case("openai-format-to-gemini-uses-its-openai-endpoint", openai_chat("ge-chat"), ("full",), "gemini",
         "/v1beta/openai/chat/completions", {"authorization": bearer("gemini"), "x-goog-api-key": None},
         {"model": "ge-chat", "messages": CHAT},
         reply_headers=routed("gemini", "ge-chat", "direct"),
         result="hello from ge-chat", record=tokens(3, 4)),
    # Claude Code asks for dated ids; `model_prefixes` says whose they are, so they pass through, not 404.
    Case("dated-claude-id-the-catalog-lacks-goes-to-anthropic", anthropic_messages("claude-opus-4-1-20250805"),
         ("full",), "anthropic", "/v1/messages", {"x-api-key": SECRETS["anthropic"], "authorization": None},
         {"model": "claude-opus-4-1-20250805"},
         reply_headers=routed("anthropic", "claude-opus-4-1-20250805", "direct"),
         result="hello from claude-opus-4-1-20250805", record=tokens(3, 4)),
    # Translated: a client of one API served by a provider of another.
    Case("anthropic-sdk-served-by-an-openai-provider", anthropic_messages_whole("oa-chat"), ("full",), "openai",
         "/v1/chat/completions", {"authorization": bearer("openai"), "x-api-key": None},
         {"model": "oa-chat", "max_tokens": 50,
          "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
         reply_headers=routed("openai", "oa-chat", "direct; translated messages->chat"),
         result=("hello from oa-chat", 3, 4), record=tokens(3, 4)),
    Case("openai-sdk-served-by-an-anthropic-only-provider", openai_chat_whole("an-only"), ("full",), "anthropic",
         "/v1/messages", {"x-api-key": SECRETS["anthropic"], "authorization": None},
         {"model": "an-only", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
         reply_headers=routed("an-only", "an-only", "direct; translated chat->messages"),
         result=("hello from an-only", "stop", 3), record=tokens(3, 4)),
    # Streamed: through the relay, which reads the usage from the stream as it passes.
    Case("streaming-passes-through", openai_chat_stream("fast"), ("relay",), "groq",
         "/openai/v1/chat/completions", {"authorization": bearer("groq")},
         {"model": "openai/gpt-oss-20b", "stream": True},
         reply_headers=routed("groq", "openai/gpt-oss-20b", "alias"),
         result=["hello", " from", " openai/gpt-oss-20b"], record=tokens(11, 3)),
    # The gateway asks for the usage chunk on the client's behalf, and keeps it from a client that did not ask.
    Case("a-stream-is-asked-for-its-usage-the-client-did-not-ask-for", openai_chat_stream("oa-chat"), ("relay",),
         "openai", "/v1/chat/completions", {"authorization": bearer("openai")},
         {"model": "oa-chat", "stream": True, "stream_options": {"include_usage": True}},
         reply_headers=routed("openai", "oa-chat", "direct"),
         result=["hello", " from", " oa-chat"],
         record={**tokens(11, 3), "cost_usd": pytest.approx((11 * 1.0 + 3 * 4.0) / 1e6)}),
    Case("a-stream-whose-client-asked-for-its-usage-gets-it",
         openai_chat_stream("oa-chat", stream_options={"include_usage": True}), ("fast", "relay"),
         "openai", "/v1/chat/completions", {"authorization": bearer("openai")},
         {"model": "oa-chat", "stream": True, "stream_options": {"include_usage": True}},
         reply_headers=routed("openai", "oa-chat", "direct"),
         result=["hello", " from", " oa-chat", "usage 11/3"], record=tokens(11, 3)),
    Case("anthropic-stream", anthropic_messages_stream("an-chat"), ("fast", "relay"), "anthropic",
         "/v1/messages", {"x-api-key": SECRETS["anthropic"], "authorization": None},
         {"model": "an-chat", "stream": True},
         reply_headers=routed("anthropic", "an-chat", "direct"),
         result=("hello from an-chat", ["end_turn"], MESSAGES_EVENTS), record=tokens(3, 4)),
    Case("responses-stream", openai_responses_stream("oa-cheap"), ("relay",), "openai",
         "/v1/responses", {"authorization": bearer("openai")}, {"model": "oa-cheap", "stream": True},
         reply_headers=routed("openai", "oa-cheap", "direct"),
         result=("hello from oa-cheap", RESPONSES_EVENTS, [4]), record=tokens(3, 4)),
    Case("gemini-stream", gemini_stream("ge-chat"), ("relay",), "gemini",
         "/v1beta/models/ge-chat:streamGenerateContent?alt=sse",
         {"x-goog-api-key": SECRETS["gemini"], "authorization": None},
         {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
         reply_headers=routed("gemini", "ge-chat", "direct"),
         result=(["hello", " from", " ge-chat"],
                 {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}),
         record=tokens(3, 4)),
    Case("anthropic-sdk-streams-from-an-openai-provider", anthropic_messages_stream("oa-chat"), ("relay",),
         "openai", "/v1/chat/completions", {"authorization": bearer("openai"), "x-api-key": None},
         {"model": "oa-chat", "stream": True},
         reply_headers=routed("openai", "oa-chat", "direct; translated messages->chat"),
         result=("hello from oa-chat", ["end_turn"], MESSAGES_EVENTS), record=tokens(11, 3)),
    Case("openai-sdk-streams-from-an-anthropic-only-provider",
         openai_chat_stream("an-only", stream_options={"include_usage": True}), ("relay",), "anthropic",
         "/v1/messages", {"x-api-key": SECRETS["anthropic"], "authorization": None},
         {"model": "an-only", "stream": True},
         reply_headers=routed("an-only", "an-only", "direct; translated chat->messages"),
         result=["", "hello", " from", " an-only", "[stop]", "usage 3/4"], record=tokens(3, 4)),
]

_RIDS = itertools.count()


def warmed(stack: Stack, case: Case) -> None:
    """Until Envoy serves the case's request alone: the first request of a model takes the full path, and its
    route is published for the next (once the routes file Envoy watches is rewritten)."""
    def fast() -> bool:
        return case.call(stack.url, f"warm-{case.id}-{next(_RIDS)}").headers.get("x-extproc-route", "").endswith(FAST)
    eventually(fast, f"{case.id} goes fast")


@pytest.mark.parametrize(("case", "path"), [pytest.param(case, path, id=f"{path}-{case.id}")
                                            for case in CASES for path in case.paths])
def test_a_request_through_each_path(request: pytest.FixtureRequest, fakes: dict[str, FakeProvider],
                                     case: Case, path: str) -> None:
    stack: Stack = request.getfixturevalue(STACKS[path])
    if path == "fast":
        warmed(stack, case)
        for fake in fakes.values():
            fake.reset()  # what the warm-up sent is not this request's
    rid = f"{path}-{case.id}"
    reply = case.call(stack.url, rid)
    route = case.reply_headers["x-extproc-route"] + (FAST if path == "fast" else "")
    assert {k: reply.headers.get(k) for k in case.reply_headers} == {**case.reply_headers, "x-extproc-route": route}
    assert reply.status in (case.status, None)
    assert reply.result == case.result

    (seen,) = fakes[case.provider].wait_for(1)
    assert {name: len(fake.requests) for name, fake in fakes.items() if fake.requests} == {case.provider: 1}
    assert (seen.method, seen.path) == ("POST", case.path)
    assert {k: seen.headers.get(k) for k in case.headers} == dict(case.headers)
    assert CLIENT_KEY not in json.dumps(seen.headers)  # the client's key never leaves the gateway
    assert int(seen.headers["content-length"]) == len(seen.body)  # also where the body was rewritten
    ours = {h for h in seen.headers if h.startswith("x-extproc-")}
    assert ours == (set() if path == "relay" else {"x-extproc-api"})  # the client's API family: Envoy's own
    # replies on the way to the provider use it; the relay, which makes its own call, drops it too
    doc = seen.json()
    if case.whole_body:
        assert doc == case.body
    else:
        assert {k: doc.get(k) for k in case.body} == dict(case.body)

    record = stack.usage_record(rid)  # the relay writes a stream's; Envoy's access log a fast answer's
    assert {k: record[k] for k in ("provider", "served_model", "route", "status", "streamed", "client",
                                   *case.record)} == {
        "provider": case.reply_headers["x-extproc-provider"], "served_model": case.reply_headers["x-extproc-model"],
        "route": route, "status": case.status, "streamed": "relay" in case.paths, "client": "paths", **case.record}
    assert record["latency_ms"] >= record["ttft_ms"] > 0
    # Only the fast path's answer never reached the processor (read once its record is in: the processor's own
    # line, had it routed the request, was written before the answer).
    assert (f"route rid={rid} " in stack.logs()) is (path != "fast")

