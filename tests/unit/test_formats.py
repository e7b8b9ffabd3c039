from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.core.view import RequestView
from extproc.formats import ENDPOINTS, FAMILIES, SPECS, ApiSpec, api_for_path, error_body, match_endpoint
from extproc.formats.base import dumps
from extproc.formats.errors import error_headers

CHAT, COMPLETIONS, RESPONSES = "/v1/chat/completions", "/v1/completions", "/v1/responses"
EMBEDDINGS, MESSAGES = "/v1/embeddings", "/v1/messages"
GEN, STREAM, EMBED = ("/v1beta/models/gem:generateContent", "/v1beta/models/gem:streamGenerateContent?alt=sse",
                      "/v1beta/models/gem:embedContent")


def parse(path: str, body: Any) -> RequestView:
    endpoint = match_endpoint(path)
    assert endpoint is not None, path
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    view = endpoint.read(raw).view
    assert view.endpoint == endpoint.name
    return view


def parse_error(path: str, body: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        parse(path, body)
    return info.value


# ---------------------------------------------------------------- endpoints

@pytest.mark.parametrize(("path", "api", "name", "query"), [
    (CHAT, Api.OPENAI, "chat", ""),
    (CHAT + "?trace=1", Api.OPENAI, "chat", "trace=1"),
    (COMPLETIONS, Api.OPENAI, "completions", ""),
    (RESPONSES, Api.OPENAI, "responses", ""),
    (EMBEDDINGS, Api.OPENAI, "embeddings", ""),
    (MESSAGES, Api.ANTHROPIC, "messages", ""),
    ("/v1/messages/count_tokens", Api.ANTHROPIC, "messages", ""),
    (GEN, Api.GEMINI, "gemini", ""),
    (STREAM, Api.GEMINI, "gemini", "alt=sse"),
    ("/v1/models/gem:generateContent", Api.GEMINI, "gemini", ""),
    ("/v1alpha/models/gem:countTokens", Api.GEMINI, "gemini", ""),
])
def test_match_endpoint(path, api, name, query):
    endpoint = match_endpoint(path)
    assert endpoint is not None
    assert (endpoint.api, endpoint.name, endpoint.query) == (api, name, query)


@pytest.mark.parametrize("path", ["/", "/v1/chat", "/v1/chat/completions/extra", "/v2/chat/completions",
                                  "/v1/models", "/v1/messages/batches", "/v1beta/models/gem",
                                  "/v2beta/models/gem:generateContent", "/chat/completions"])
def test_unknown_path_is_none(path):
    assert match_endpoint(path) is None


@pytest.mark.parametrize(("path", "api"), [
    ("/v1/messages/batches", Api.ANTHROPIC),
    ("/v1beta/files", Api.GEMINI),
    ("/v1/models/x:generateContent/extra", Api.GEMINI),
    ("/v1/nothing", Api.OPENAI),
])
def test_api_for_unmatched_path(path, api):
    assert api_for_path(path) is api


# ---------------------------------------------------------------- what a request needs

TEXT = [{"role": "user", "content": "hello"}]
TOOL = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
PIXEL = "iVBORw0KGgo="


@pytest.mark.parametrize(("path", "body", "needs"), [
    # OpenAI chat
    (CHAT, {"messages": TEXT}, set()),
    (CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}]}, {"vision"}),
    (CHAT, {"messages": TEXT, "tools": TOOL}, {"tools"}),
    (CHAT, {"messages": TEXT, "functions": [{"name": "f"}]}, {"tools"}),
    (CHAT, {"messages": TEXT, "reasoning_effort": "high"}, {"reasoning"}),
    (CHAT, {"messages": TEXT, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     {"structured_output"}),
    (CHAT, {"messages": TEXT, "response_format": {"type": "json_object"}}, set()),
    (CHAT, {"messages": TEXT, "stream": True}, {"streaming"}),
    (CHAT, {"messages": TEXT, "stream": False}, set()),
    # OpenAI Responses
    (RESPONSES, {"input": "hello"}, set()),
    (RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     {"vision"}),
    (RESPONSES, {"input": "hi", "reasoning": {"effort": "low"}}, {"reasoning"}),
    (RESPONSES, {"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, {"structured_output"}),
    (RESPONSES, {"input": "hi", "tools": TOOL, "stream": True}, {"tools", "streaming"}),
    # Anthropic
    (MESSAGES, {"messages": TEXT, "max_tokens": 10}, set()),
    (MESSAGES, {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}]}]}, {"vision"}),
    (MESSAGES, {"messages": TEXT, "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, {"tools"}),
    (MESSAGES, {"messages": TEXT, "thinking": {"type": "enabled", "budget_tokens": 1024}}, {"reasoning"}),
    (MESSAGES, {"messages": TEXT, "thinking": {"type": "disabled"}}, set()),
    (MESSAGES, {"messages": TEXT, "output_format": {"type": "json_schema", "schema": {}}}, {"structured_output"}),
    (MESSAGES, {"messages": TEXT, "stream": True}, {"streaming"}),
    # Gemini
    (GEN, {"contents": [{"parts": [{"text": "hi"}]}]}, set()),
    (GEN, {"contents": [{"parts": [{"inline_data": {"mime_type": "image/png", "data": PIXEL}}]}]}, {"vision"}),
    (GEN, {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": PIXEL}}]}]}, {"vision"}),
    (GEN, {"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/x.png"}}]}]}, {"vision"}),
    (GEN, {"contents": [], "tools": [{"functionDeclarations": [{"name": "f"}]}]}, {"tools"}),
    (GEN, {"contents": [], "generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}, {"reasoning"}),
    (GEN, {"contents": [], "generationConfig": {"responseSchema": {"type": "OBJECT"}}}, {"structured_output"}),
    (GEN, {"contents": [], "generation_config": {"response_json_schema": {"type": "object"}}},
     {"structured_output"}),
    (STREAM, {"contents": [{"parts": [{"text": "hi"}]}]}, {"streaming"}),
])
def test_capability_detection(path, body, needs):
    if "contents" not in body:
        body = {"model": "m", **body}
    view = parse(path, body)
    assert view.needs == needs
    assert view.mode == "chat"


@pytest.mark.parametrize(("path", "body", "model", "api"), [
    (EMBEDDINGS, {"model": "emb", "input": "hello"}, "emb", Api.OPENAI),
    (EMBED, {"content": {"parts": [{"text": "hello"}]}}, "gem", Api.GEMINI),
    ("/v1beta/models/gem:batchEmbedContents", {"requests": []}, "gem", Api.GEMINI),
])
def test_embedding_requests(path, body, model, api):
    view = parse(path, body)
    assert (view.mode, view.model, view.api, view.needs) == ("embedding", model, api, frozenset())


@pytest.mark.parametrize(("path", "body", "max_output"), [
    (CHAT, {"model": "m", "max_tokens": 100}, 100),
    (CHAT, {"model": "m", "max_tokens": 100, "max_completion_tokens": 200}, 200),
    (CHAT, {"model": "m", "max_tokens": 0}, None),
    (CHAT, {"model": "m", "max_tokens": True}, None),
    (RESPONSES, {"model": "m", "max_output_tokens": 300}, 300),
    (MESSAGES, {"model": "m", "max_tokens": 400}, 400),
    (GEN, {"generationConfig": {"maxOutputTokens": 500}}, 500),
    (GEN, {}, None),
])
def test_max_output_tokens(path, body, max_output):
    assert parse(path, body).max_output_tokens == max_output


def test_token_estimate_counts_text_and_images():
    text_only = parse(CHAT, {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]})
    with_image = parse(CHAT, {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x" * 400}, {"type": "image_url", "image_url": {"url": "data:" + "A" * 10**5}}]}]})
    assert text_only.input_tokens >= 100  # at least 1 token per 4 characters
    # an image costs a fixed amount, not its base64 length
    assert 0 < with_image.input_tokens - text_only.input_tokens < 10**5 // 4


@pytest.mark.parametrize(("path", "model"), [
    ("/v1beta/models/gemini-x:generateContent", "gemini-x"),
    ("/v1beta/models/gemini%2Fgemini-x:generateContent", "gemini/gemini-x"),
    ("/v1beta/models/gemini/gemini-x:generateContent", "gemini/gemini-x"),
])
def test_gemini_model_comes_from_the_path(path, model):
    assert parse(path, {"contents": [], "model": "ignored"}).model == model


# ---------------------------------------------------------------- bad bodies

BAD_BODIES = [
    (b"", "invalid_request"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_request"),
    (b'"model"', "invalid_request"),
    (b'{"messages": []}', "missing_model"),
    (b'{"model": null}', "missing_model"),
    (b'{"model": 4}', "invalid_model"),
    (b'{"model": ["m"]}', "invalid_model"),
    (b'{"model": ""}', "invalid_model"),
    (b'{"model": "   "}', "invalid_model"),
]


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS, MESSAGES])
@pytest.mark.parametrize(("body", "kind"), BAD_BODIES)
def test_bad_bodies_are_400(path, body, kind):
    err = parse_error(path, body)
    assert (err.status, err.kind) == (400, kind)


@pytest.mark.parametrize(("path", "body", "kind"), [
    (GEN, b"", "invalid_request"),
    (GEN, b"nope", "invalid_json"),
    (GEN, b"[]", "invalid_request"),
    ("/v1beta/models/:generateContent", b"{}", "missing_model"),
    ("/v1beta/models/%20:generateContent", b"{}", "missing_model"),
])
def test_bad_gemini_requests_are_400(path, body, kind):
    err = parse_error(path, body)
    assert (err.status, err.kind) == (400, kind)


@pytest.mark.parametrize("path", [CHAT, RESPONSES, EMBEDDINGS, MESSAGES, MESSAGES + "/count_tokens"])
@pytest.mark.parametrize("body", [
    b'{"model": "a", "model": "b"}',
    b'{"model": "a", "model": "a"}',
    b'{"model": "a", "mod\\u0065l": "b"}',  # an escaped letter: the same key to every parser
    b'{"m\\u006Fdel": "a", "model": "b"}',
    b'{"model": "a", "metadata": {"model": 1, "model": 2}}',
])
def test_a_model_named_twice_is_refused(path, body):
    err = parse_error(path, body)
    assert (err.status, err.kind, err.param) == (400, "duplicate_key", "model")


@pytest.mark.parametrize("body", [
    b'{"model": "a", "tools": [{"parameters": {"properties": {"model": {"type": "string"}}}}]}',
    b'{"model": "a", "messages": [{"role": "user", "content": "say \\"model\\" twice: model"}]}',
    b'{"model": "a", "user": "caf\\u00e9 \\u0000"}',
])
def test_model_as_a_word_or_a_nested_key_once_is_no_duplicate(body):
    assert parse(CHAT, body).model == "a"


def test_gemini_bodies_are_not_checked_for_model_keys():
    """The model is in the path; a Gemini chat names the "model" role in every answer turn."""
    contents = [{"role": r, "parts": [{"text": "x"}]} for r in ("user", "model", "user", "model", "user")]
    assert parse(GEN, {"contents": contents}).model == "gem"


@pytest.mark.parametrize("depth", [1, 199, 200, 254, 255, 401, 1000, 1022])  # 1022 + 2: orjson's 1024
def test_any_document_orjson_reads_is_written_back_the_same(depth):
    raw = (b'{"model": "m", "a": ' + b'[{"k": 1, "l": ' * (depth // 2) + b"[]" + b"}]" * (depth // 2)
           + b', "b": ' + b"[" * depth + b"{}" + b"]" * depth + b"}").replace(b" ", b"")
    assert dumps(orjson.loads(raw)) == raw


def test_deep_tool_arguments_are_measured_not_refused():
    deep = {"a": json.loads("[" * 400 + "]" * 400)}
    view = parse(MESSAGES, {"model": "m", "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": deep}]}]})
    assert view.model == "m"


@pytest.mark.parametrize(("path", "body"), [
    (MESSAGES, {"model": "m", "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "search", "input": {"type": ["pdf", "doc"]}}]}]}),
    (GEN, {"contents": [{"role": "model", "parts": [
        {"functionCall": {"name": "search", "args": {"type": {"any": True}}}}]}]}),
])
def test_tool_arguments_named_type_are_plain_data(path, body):
    assert "vision" not in parse(path, body).needs


# ---------------------------------------------------------------- error envelopes

ERR = ClientError(404, "model_not_found", "The model 'x' does not exist.", param="model")


def test_openai_error_envelope():
    assert json.loads(error_body(Api.OPENAI, ERR)) == {"error": {
        "message": ERR.message, "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


def test_anthropic_error_envelope():
    assert json.loads(error_body(Api.ANTHROPIC, ERR)) == {
        "type": "error", "error": {"type": "not_found_error", "message": ERR.message}}


def test_gemini_error_envelope():
    assert json.loads(error_body(Api.GEMINI, ERR)) == {
        "error": {"code": 404, "message": ERR.message, "status": "NOT_FOUND"}}


@pytest.mark.parametrize(("status", "openai", "anthropic", "gemini"), [
    (400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    (429, "rate_limit_error", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    (503, "service_unavailable_error", "api_error", "UNAVAILABLE"),
    (405, "invalid_request_error", "invalid_request_error", "UNIMPLEMENTED"),
    (413, "invalid_request_error", "request_too_large", "INVALID_ARGUMENT"),
    (415, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    (418, "api_error", "api_error", "UNKNOWN"),
])
def test_error_types_by_status(status, openai, anthropic, gemini):
    err = ClientError(status, "k", "m")
    assert json.loads(error_body(Api.OPENAI, err))["error"]["type"] == openai
    assert json.loads(error_body(Api.ANTHROPIC, err))["error"]["type"] == anthropic
    assert json.loads(error_body(Api.GEMINI, err))["error"]["status"] == gemini


@pytest.mark.parametrize(("retry_after", "expected"), [
    (None, {"content-type": "application/json"}),
    (7, {"content-type": "application/json", "retry-after": "7"}),
])
def test_error_headers(retry_after, expected):
    assert error_headers(ClientError(503, "k", "m", retry_after=retry_after)) == expected


# ---------------------------------------------------------------- the table and what is derived from it

def _examples(spec: ApiSpec) -> list[str]:
    """Concrete paths a row's pattern matches, one per API version it takes."""
    versions = ["v1beta", "v1", "v1alpha"] if "(?P<version>" in spec.pattern else [""]
    return [re.sub(r"\(\?P<model>[^)]*\)", "some-model", re.sub(r"\(\?P<version>[^)]*\)", v, spec.pattern))
            for v in versions]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.pattern)
def test_every_row_is_matched_and_enveloped_alike_by_processor_and_envoy(spec):
    for path in _examples(spec):
        endpoint = match_endpoint(path + "?x=1")
        assert endpoint is not None and endpoint.spec is spec
        assert api_for_path(path) is spec.api
        # Envoy's local replies pick the envelope with the family regexes; they must agree with the processor.
        claimed = [f.api for f in FAMILIES.values() if f.api is not Api.OPENAI and re.fullmatch(f.paths, path)]
        assert claimed == ([] if spec.api is Api.OPENAI else [spec.api])
        assert re.fullmatch(FAMILIES[spec.api].paths, path + "?alt=sse")


def test_config_endpoint_names_come_from_the_table():
    expected = {Api.OPENAI: {"chat", "completions", "responses", "embeddings"}, Api.ANTHROPIC: {"messages"},
                Api.GEMINI: {"gemini"}}
    assert expected == ENDPOINTS


@pytest.mark.parametrize(("path", "model", "upstream"), [
    ("/v1beta/models/a:generateContent", "b", "/v1beta/models/b:generateContent"),
    ("/v1/models/a:embedContent", "b", "/v1/models/b:embedContent"),
    ("/v1/chat/completions", "b", "/chat/completions"),
    ("/v1beta/models/a:streamGenerateContent?alt=sse&key=secret", "b",
     "/v1beta/models/b:streamGenerateContent?alt=sse"),
])
def test_upstream_rest_rewrites_a_path_model_and_drops_client_keys(path, model, upstream):
    endpoint = match_endpoint(path)
    assert endpoint is not None and endpoint.upstream_rest(model) == upstream
