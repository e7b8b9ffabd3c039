"""Bad input through one real Envoy and processor, sent as raw bytes: every case gets its status and its error in
the client's own API envelope, and nothing reaches a provider; the few inputs that are odd but servable reach the
provider exactly as the gateway read them.

Choices the cases pin down (and why):
- A body must be one JSON object. Numbers no double can hold (1e400, a 5000-digit integer) and lone surrogate
  escapes are refused as invalid JSON (RFC 8259 §6, §8.2: not interoperable), never passed on as something else.
- `model` named twice in an object is refused: the gateway would route by one, a provider may serve the other.
- Unknown fields pass through untouched (byte for byte when the body needs no rewrite).
- `content-encoding: gzip` (and br, zstd) is inflated by Envoy before the processor reads it, and the body limit
  counts the inflated bytes; any other coding is refused with 415, never read as "invalid JSON".
- The content-type is not checked: a JSON object is served whatever the client labelled it (`curl -d` says
  form-urlencoded, a browser's fetch text/plain, some clients none). LiteLLM's proxy likewise reads any non-form
  body as JSON; the endpoints here take JSON only, so a form label on a JSON body is read as JSON too. The
  provider is told `application/json`, so it reads the body as the gateway did (not as a form, or as nothing).
- Envoy's own refusals (body over max_request_bytes, an HTTP request its codec rejects) come in the envelope too.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from extproc.core.providers import Api
from extproc.formats import SPECS, ApiSpec, match_endpoint
from tests.conftest import Stack, provider_config
from tests.fakes import FakeProvider

LIMIT = 256 * 1024  # max_request_bytes of this stack: small, so the 413 cases stay small
CHAT = [{"role": "user", "content": "hi"}]
MODELS: list[dict[str, Any]] = [
    {"id": "oa-chat", "provider": "openai", "context_window": 100000, "capabilities": ["tools", "streaming"]},
    {"id": "an-chat", "provider": "anthropic", "context_window": 100000, "capabilities": ["tools", "streaming"]},
    {"id": "ge-chat", "provider": "gemini", "context_window": 100000, "capabilities": ["tools", "streaming"]},
]

CHAT_PATH, RESPONSES_PATH, MESSAGES_PATH = "/v1/chat/completions", "/v1/responses", "/v1/messages"
GEMINI_PATH = "/v1beta/models/ge-chat:generateContent"


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    return make_module_stack({"providers": provider_config(fakes), "models": MODELS, "discovery": False,
                       "aliases": {"chat-alias": "oa-chat"}, "max_request_bytes": LIMIT})


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def chat(**fields: Any) -> bytes:
    return dumps({"model": "oa-chat", "messages": CHAT, **fields})


@dataclass(frozen=True)
class Bad:
    """One bad input: what is sent, and the status and envelope code it must get back."""

    id: str
    path: str
    body: bytes
    status: int
    code: str  # error.code (OpenAI), error.type (Anthropic), error.status (Gemini)
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def envelope(self) -> str:
        if self.path.startswith("/v1beta/"):
            return "gemini"
        return "anthropic" if self.path.startswith(MESSAGES_PATH) else "openai"


def openai(name: str, body: bytes, status: int, code: str, **kw: Any) -> Bad:
    return Bad(name, kw.pop("path", CHAT_PATH), body, status, code, **kw)


def anthropic(name: str, body: bytes, status: int, code: str = "invalid_request_error", **kw: Any) -> Bad:
    return Bad(name, kw.pop("path", MESSAGES_PATH), body, status, code, **kw)


def gemini(name: str, body: bytes, status: int, code: str = "INVALID_ARGUMENT", **kw: Any) -> Bad:
    return Bad(name, kw.pop("path", GEMINI_PATH), body, status, code, **kw)


MSG = {"max_tokens": 5, "messages": CHAT}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
TOO_BIG = "x" * (LIMIT + 1024)

BAD = [
    # The body is not a JSON object.
    openai("not-json", b"model=oa-chat&messages=hi", 400, "invalid_json"),
    openai("truncated-json", chat()[:-9], 400, "invalid_json"),
    openai("json-array", b'[{"model": "oa-chat"}]', 400, "invalid_request"),
    openai("json-string", b'"oa-chat"', 400, "invalid_request"),
    openai("json-number", b"42", 400, "invalid_request"),
    openai("json-null", b"null", 400, "invalid_request"),
    openai("utf8-bom-before-json", b"\xef\xbb\xbf" + chat(), 400, "invalid_json"),  # RFC 8259 §8.1: no BOM
    openai("invalid-utf8-bytes", chat()[:-1] + b', "user": "\xff\xfe\xc3"}', 400, "invalid_json"),
    openai("empty-body", b"", 400, "invalid_request"),
    openai("responses-not-json", b"{input: hi}", 400, "invalid_json", path=RESPONSES_PATH),
    anthropic("messages-not-json", b"<xml/>", 400),
    anthropic("messages-json-array", b"[]", 400),
    gemini("gemini-not-json", b"contents=hi", 400),
    gemini("gemini-json-string", b'"hi"', 400),
    # The model: missing, of the wrong type, or no model id.
    openai("model-missing", dumps({"messages": CHAT}), 400, "missing_model"),
    openai("model-null", chat(model=None), 400, "missing_model"),
    openai("model-number", chat(model=4), 400, "invalid_model"),
    openai("model-array", chat(model=["oa-chat"]), 400, "invalid_model"),
    openai("model-object", chat(model={"id": "oa-chat"}), 400, "invalid_model"),
    openai("model-bool", chat(model=True), 400, "invalid_model"),
    openai("model-empty", chat(model=""), 400, "invalid_model"),
    openai("model-blank", chat(model="  "), 400, "invalid_model"),
    openai("model-20kb", chat(model="a" * 20_000), 400, "invalid_model"),
    openai("model-control-chars", chat(model="oa-chat\u0000\u001b[2J"), 400, "invalid_model"),
    openai("model-newline-forges-a-log-line", chat(model="oa-chat\nINFO route ok"), 400, "invalid_model",
           path=RESPONSES_PATH),
    openai("model-rtl-override", chat(model="\u202eoa-chat"), 400, "invalid_model"),
    openai("model-zero-width-space", chat(model="oa\u200b-chat"), 400, "invalid_model"),
    openai("model-fullwidth-letters", chat(model="ｏａ-chat"), 400, "invalid_model"),
    openai("model-path-traversal", chat(model="openai/../../admin"), 400, "invalid_model"),
    openai("model-lone-surrogate-escape", b'{"model": "\\ud800", "messages": []}', 400, "invalid_json"),
    openai("unknown-model", chat(model="no-such-model"), 404, "model_not_found"),
    anthropic("messages-model-missing", dumps(MSG), 400),
    anthropic("messages-model-number", dumps({**MSG, "model": 5}), 400),
    anthropic("messages-unknown-model", dumps({**MSG, "model": "no-such-model"}), 404, "not_found_error"),
    # `model` twice: the gateway would route one, the provider may read the other.
    openai("duplicate-model", b'{"model": "oa-chat", "messages": [], "model": "gpt-6.2-astra"}', 400, "duplicate_key"),
    openai("duplicate-model-same-value", b'{"model": "oa-chat", "model": "oa-chat", "messages": []}', 400,
           "duplicate_key"),
    openai("duplicate-model-escaped-key", b'{"model": "oa-chat", "mod\\u0065l": "gpt-6.2-astra"}', 400,
           "duplicate_key", path=RESPONSES_PATH),
    openai("duplicate-model-nested", chat()[:-1] + b', "metadata": {"model": "a", "model": "b"}}', 400,
           "duplicate_key"),
    anthropic("messages-duplicate-model", b'{"model": "an-chat", "max_tokens": 5, "messages": [], "model": "x"}',
              400),
    anthropic("count-tokens-duplicate-model", b'{"model": "an-chat", "messages": [], "model": "an-chat"}', 400,
              path=MESSAGES_PATH + "/count_tokens"),
    # Unicode and numbers JSON allows but no provider can be given as they came.
    openai("lone-surrogate-in-a-message", chat()[:-1] + b', "user": "\\udc00x"}', 400, "invalid_json"),
    gemini("gemini-lone-surrogate", b'{"contents": [{"parts": [{"text": "\\ud83d"}]}]}', 400),
    openai("max-tokens-1e400", chat()[:-1] + b', "max_tokens": 1e400}', 400, "invalid_json"),
    openai("max-tokens-5000-digits", chat()[:-1] + b', "max_tokens": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    anthropic("messages-temperature-minus-1e999", dumps({**MSG, "model": "an-chat"})[:-1] + b', "temperature": -1e999}',
              400),
    openai("nested-100000-deep", chat()[:-1] + b', "metadata": ' + nested(100_000) + b"}", 400, "invalid_json"),
    gemini("gemini-nested-100000-deep", b'{"contents": ' + nested(100_000) + b"}", 400),
    # Sizes and encodings Envoy handles before the processor.
    openai("body-over-max-request-bytes", chat(user=TOO_BIG), 413, "request_too_large"),
    anthropic("messages-body-over-max-request-bytes", dumps({**MSG, "model": "an-chat", "system": TOO_BIG}), 413,
              "request_too_large"),
    gemini("gemini-body-over-max-request-bytes", dumps({**CONTENTS, "x": TOO_BIG}), 413),
    openai("gzip-bomb-over-the-limit-once-inflated", gzip.compress(chat(user="a" * 4 * LIMIT)), 413,
           "request_too_large", headers={"content-encoding": "gzip"}),
    openai("gzip-named-but-not-gzip", chat(), 400, "invalid_request", headers={"content-encoding": "gzip"}),
    openai("unsupported-content-encoding", chat(), 415, "unsupported_content_encoding",
           headers={"content-encoding": "deflate"}),
    anthropic("messages-unsupported-content-encoding", dumps({**MSG, "model": "an-chat"}), 415,
              headers={"content-encoding": "compress"}),
    gemini("gemini-unsupported-content-encoding", dumps(CONTENTS), 415, headers={"content-encoding": "x-custom"}),
    # Paths and methods.
    openai("unknown-path", chat(), 404, "unknown_endpoint", path="/v1/chat/complete"),
    openai("unknown-path-outside-v1", chat(), 404, "unknown_endpoint", path="/admin"),
    openai("path-with-encoded-slashes", chat(), 404, "unknown_endpoint", path="/v1%2Fchat%2Fcompletions"),
    openai("chat-with-get", b"", 405, "method_not_allowed", method="GET"),
    openai("responses-with-put", b"{}", 405, "method_not_allowed", method="PUT", path=RESPONSES_PATH),
    openai("models-with-post", b"{}", 405, "method_not_allowed", path="/v1/models"),
    anthropic("messages-with-put", dumps({**MSG, "model": "an-chat"}), 405, method="PUT"),
    anthropic("messages-unknown-subpath", b"{}", 404, "not_found_error", path=MESSAGES_PATH + "/batches/x"),
    gemini("gemini-with-delete", b"{}", 405, "UNIMPLEMENTED", method="DELETE"),
    gemini("gemini-unknown-method", dumps(CONTENTS), 404, "NOT_FOUND", path="/v1beta/models/ge-chat:bogus"),
    # Gemini's model lives in the path: malformed or traversing segments.
    gemini("gemini-encoded-traversal", dumps(CONTENTS), 400, path="/v1beta/models/..%2F..%2Fx:generateContent"),
    gemini("gemini-encoded-dot-dot", dumps(CONTENTS), 400, path="/v1beta/models/%2e%2e:generateContent"),
    gemini("gemini-empty-model", dumps(CONTENTS), 400, path="/v1beta/models/:generateContent"),
    gemini("gemini-blank-model", dumps(CONTENTS), 400, path="/v1beta/models/%20:generateContent"),
    # a/b has the shape of a qualified id (provider/model): looked up, and no such model
    gemini("gemini-two-segment-model", dumps(CONTENTS), 404, "NOT_FOUND", path="/v1beta/models/a/b:generateContent"),
    gemini("gemini-model-with-query-chars", dumps(CONTENTS), 400, path="/v1beta/models/ge-chat%3Fkey%3Dx:countTokens"),
    gemini("gemini-rtl-model", dumps(CONTENTS), 400, path="/v1beta/models/%E2%80%AEge-chat:generateContent"),
    gemini("gemini-nul-in-path", dumps(CONTENTS), 400, path="/v1beta/models/ge%00chat:generateContent"),
    gemini("gemini-unknown-model", dumps(CONTENTS), 404, "NOT_FOUND", path="/v1beta/models/no-such:generateContent"),
    gemini("gemini-batch-without-requests-list", b'{"requests": {}}', 400,
           path="/v1beta/models/ge-chat:batchEmbedContents"),
]


def error_code(envelope: str, status: int, response: httpx.Response) -> str:
    """The envelope's machine-readable code, after checking the envelope's shape for this client API."""
    assert response.headers["content-type"] == "application/json", response.text
    doc = response.json()
    if envelope == "openai":
        error = doc["error"]
        assert set(error) >= {"message", "type", "param", "code"} and error["message"]
        assert error["type"] == "invalid_request_error"  # every case is the client's error
        return str(error["code"])
    if envelope == "anthropic":
        assert doc["type"] == "error" and doc["error"]["message"]
        return str(doc["error"]["type"])
    error = doc["error"]
    assert error["code"] == status and error["message"]
    return str(error["status"])


def assert_nothing_upstream(fakes: Mapping[str, FakeProvider]) -> None:
    assert {name: len(fake.requests) for name, fake in fakes.items() if fake.requests} == {}


def table_path(spec: ApiSpec) -> str:
    """A path the client-API table's row matches (a Gemini row's model is in the path)."""
    path = f"/v1beta/models/ge-chat:{spec.pattern.rsplit(':', 1)[1]}" if spec.model_in_path else spec.pattern
    endpoint = match_endpoint(path)
    assert endpoint is not None and endpoint.spec is spec, path
    return path


INVALID_JSON = {Api.OPENAI: "invalid_json", Api.ANTHROPIC: "invalid_request_error", Api.GEMINI: "INVALID_ARGUMENT"}


@pytest.mark.parametrize("spec", SPECS, ids=table_path)
def test_every_endpoint_the_gateway_serves_refuses_a_body_that_is_not_json_in_its_clients_envelope(
        stack: Stack, fakes: dict[str, FakeProvider], spec: ApiSpec) -> None:
    """Each row of the gateway's client-API table, not only the paths the cases above name: a row added later is
    covered as it is added."""
    path = table_path(spec)
    response = httpx.request(spec.method, stack.url + path, content=b"{not json", timeout=30,
                             headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_code(spec.api.value, 400, response) == INVALID_JSON[spec.api]
    assert_nothing_upstream(fakes)


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_bad_input_gets_its_error_in_the_clients_envelope_and_reaches_no_provider(
        stack: Stack, fakes: dict[str, FakeProvider], case: Bad) -> None:
    headers = {"content-type": "application/json", **case.headers}
    logged = len(stack.logs())
    response = httpx.request(case.method, stack.url + case.path, content=case.body, headers=headers, timeout=30)
    assert response.status_code == case.status, response.text
    assert error_code(case.envelope, case.status, response) == case.code
    assert_nothing_upstream(fakes)
    assert "Traceback" not in stack.logs()[logged:]


# Envoy's HTTP codec refuses these before any filter runs; httpx cannot even send most of them. The envelope is
# the path's family when Envoy had parsed the path, else OpenAI's (the default).
RAW = [
    ("control-char-in-header", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-a: a\x01b\r\n", 400, "openai"),
    ("content-length-and-chunked", b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n", 400,
     "openai"),  # refused as the headers end, before they reach Envoy's filters: no path to pick Anthropic's by
    ("negative-content-length", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", 400, "openai"),
    ("fragment-in-path", b"POST /v1beta/models/ge-chat:generateContent#x HTTP/1.1\r\nHost: x\r\n", 400, "gemini"),
    ("lower-case-method", b"post /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", 400, "openai"),
    ("headers-over-the-limit", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n",
     431, "openai"),
]


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
                dict(_headers(data)).get("content-length", "0")):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), dict(_headers(data)), body


def _headers(data: bytes) -> list[tuple[str, str]]:
    lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]


@pytest.mark.parametrize(("name", "head", "status", "envelope"), RAW, ids=[r[0] for r in RAW])
def test_a_request_envoys_codec_refuses_still_gets_the_clients_envelope(
        stack: Stack, fakes: dict[str, FakeProvider], name: str, head: bytes, status: int, envelope: str) -> None:
    body = chat()
    length = b"-1" if name == "negative-content-length" else str(len(body)).encode()
    code, headers, answer = raw_exchange(stack.port, head + b"content-length: " + length + b"\r\n\r\n" + body)
    assert code == status
    response = httpx.Response(code, headers=headers, content=answer)
    expected = {"openai": "invalid_http_request", "anthropic": "invalid_request_error", "gemini": "INVALID_ARGUMENT"}
    assert error_code(envelope, status, response) == expected[envelope]
    assert_nothing_upstream(fakes)


# Odd but servable: each reaches exactly one provider, and the provider reads what the gateway read.


@dataclass(frozen=True)
class Odd:
    id: str
    path: str
    body: bytes
    provider: str
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    sent: bytes | None = None  # the exact body the provider must get; None: `body`
    check: Callable[[Any], bool] = lambda doc: True  # a property of the JSON the provider got


UNKNOWN = {"x_vendor_flag": {"nested": [1, 2.5, None, True, "ü\u2028"], "big": 12345678901234567890},
           "metadata": {"trace": "abc"}}
DEEP = nested(300)  # deeper than orjson writes (254), within what it reads (1024)


ODD = [
    Odd("unknown-fields-pass-byte-for-byte", CHAT_PATH, chat(**UNKNOWN), "openai"),
    Odd("unknown-fields-survive-a-model-rewrite", CHAT_PATH, chat(model="chat-alias", **UNKNOWN), "openai",
        sent=chat(**UNKNOWN)),
    Odd("anthropic-unknown-fields", MESSAGES_PATH, dumps({**MSG, "model": "an-chat", **UNKNOWN}), "anthropic"),
    Odd("gemini-unknown-fields", GEMINI_PATH, dumps({**CONTENTS, **UNKNOWN}), "gemini"),
    Odd("gzip-body-is-inflated-and-served", CHAT_PATH, gzip.compress(chat(**UNKNOWN)), "openai",
        headers={"content-type": "application/json", "content-encoding": "gzip"}, sent=chat(**UNKNOWN)),
    Odd("gzip-gemini-body-is-inflated-and-served", GEMINI_PATH, gzip.compress(dumps(CONTENTS)), "gemini",
        headers={"content-type": "application/json", "content-encoding": "GZIP"}, sent=dumps(CONTENTS)),
    Odd("identity-content-encoding-is-plain", RESPONSES_PATH, dumps({"model": "oa-chat", "input": "hi"}), "openai",
        headers={"content-type": "application/json", "content-encoding": "identity"}),
    Odd("text-plain-json-is-served-as-json", CHAT_PATH, chat(), "openai", headers={"content-type": "text/plain"}),
    Odd("form-content-type-json-is-served-as-json", MESSAGES_PATH, dumps({**MSG, "model": "an-chat"}), "anthropic",
        headers={"content-type": "application/x-www-form-urlencoded"}),
    Odd("no-content-type-json-is-served-as-json", GEMINI_PATH, dumps(CONTENTS), "gemini", headers={}),
    Odd("deep-nesting-in-an-unknown-field-survives-a-rewrite", CHAT_PATH,
        chat(model="chat-alias")[:-1] + b', "metadata": ' + DEEP + b"}", "openai",
        sent=chat()[:-1] + b', "metadata": ' + DEEP + b"}"),
    Odd("deep-tool-arguments-are-measured-not-refused", MESSAGES_PATH, dumps({**MSG, "model": "an-chat", "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]}]}).replace(
        b'{"a": 1}', b'{"a": ' + DEEP + b"}"), "anthropic"),
    Odd("big-integer-in-an-unknown-field-is-not-rewritten", CHAT_PATH, chat()[:-1] + b', "seed_x": ' + b"7" * 30 + b"}",
        "openai"),
    Odd("model-word-as-gemini-role-is-no-duplicate", GEMINI_PATH, dumps({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "model"}]},
        {"role": "user", "parts": [{"text": "again"}]}]}), "gemini"),
    Odd("model-as-a-tool-parameter-is-no-duplicate", CHAT_PATH, chat(tools=[{"type": "function", "function": {
        "name": "pick", "parameters": {"type": "object", "properties": {"model": {"type": "string"}}}}}]), "openai",
        check=lambda doc: doc["model"] == "oa-chat"),
    Odd("rtl-and-zero-width-in-content-are-content", CHAT_PATH,
        chat(messages=[{"role": "user", "content": "\u202e\u200b\u200d\U0001f600"}]), "openai"),
]


@pytest.mark.parametrize("case", ODD, ids=lambda case: case.id)
def test_odd_but_valid_input_reaches_the_provider_as_the_gateway_read_it(
        stack: Stack, fakes: dict[str, FakeProvider], case: Odd) -> None:
    logged = len(stack.logs())
    response = httpx.post(stack.url + case.path, content=case.body, headers=dict(case.headers), timeout=30)
    assert response.status_code == 200, response.text
    (seen,) = fakes[case.provider].wait_for(1)
    assert {name: len(fake.requests) for name, fake in fakes.items() if fake.requests} == {case.provider: 1}
    expected = case.body if case.sent is None else case.sent
    if b"chat-alias" in case.body:  # rewritten: the same JSON, serialised again
        assert json.loads(seen.body) == json.loads(expected)
        assert seen.body.count(DEEP) == expected.count(DEEP)
    else:
        assert seen.body == expected
    assert seen.headers["content-type"].startswith("application/json")
    assert "content-encoding" not in seen.headers or seen.headers["content-encoding"] == "identity"
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert case.check(seen.json())
    assert "Traceback" not in stack.logs()[logged:]


def test_a_chunked_body_reaches_the_provider_whole_with_its_length(stack: Stack,
                                                                   fakes: dict[str, FakeProvider]) -> None:
    body = chat(**UNKNOWN)
    response = httpx.post(stack.url + CHAT_PATH, content=iter([body[:10], body[10:]]),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200 and "content-length" not in response.request.headers
    (seen,) = fakes["openai"].wait_for(1)
    assert seen.body == body and int(seen.headers["content-length"]) == len(body)


def test_the_gateway_kept_serving_and_never_failed_itself(stack: Stack, fakes: dict[str, FakeProvider]) -> None:
    logs = stack.logs()
    assert "Traceback" not in logs and "internal_error" not in logs
    response = httpx.post(stack.url + CHAT_PATH, content=chat(), headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(fakes["openai"].wait_for(1)) == 1
