"""Token usage read from every API's answers, whole and streamed, split at every byte; and its cost."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.core.catalog import ModelSpec
from extproc.core.providers import Api
from extproc.usage.cost import cost
from extproc.usage.tokens import (
    ANSWER_USAGE_KEYS,
    StreamUsage,
    Usage,
    document_of_keys,
    usage_of_answer,
    usage_of_document,
    usage_of_stream_ends,
)


def _sse(*events: tuple[str | None, object], crlf: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    out = []
    for name, doc in events:
        data = doc if isinstance(doc, str) else orjson.dumps(doc).decode()
        out.append((f"event: {name}{nl}" if name else "") + f"data: {data}{nl}{nl}")
    return "".join(out).encode()


WHOLE = [
    ("openai chat", Api.OPENAI, {"choices": [], "usage": {
        "prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 12}}}, Usage(20, 30, 100, 0, 12)),
    ("openai responses", Api.OPENAI, {"output": [], "usage": {
        "input_tokens": 50, "output_tokens": 70, "input_tokens_details": {"cached_tokens": 10},
        "output_tokens_details": {"reasoning_tokens": 40}}}, Usage(40, 70, 10, 0, 40)),
    ("openai embeddings", Api.OPENAI, {"data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}},
     Usage(8, 0, 0, 0, 0)),
    ("anthropic", Api.ANTHROPIC, {"content": [], "usage": {
        "input_tokens": 9, "output_tokens": 11, "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200}}, Usage(9, 11, 1000, 200, 0)),
    ("gemini", Api.GEMINI, {"candidates": [], "usageMetadata": {
        "promptTokenCount": 60, "candidatesTokenCount": 5, "cachedContentTokenCount": 50,
        "thoughtsTokenCount": 20, "totalTokenCount": 85}}, Usage(10, 25, 50, 0, 20)),
    ("code assist", Api.GEMINI, {"response": {"usageMetadata": {"promptTokenCount": 7,
                                                                "candidatesTokenCount": 3}}}, Usage(7, 3)),
]


@pytest.mark.parametrize(("api", "doc", "expected"), [w[1:] for w in WHOLE], ids=[w[0] for w in WHOLE])
def test_a_whole_answer_reports_its_usage(api: Api, doc: object, expected: Usage) -> None:
    assert usage_of_answer(api, orjson.dumps(doc)) == expected


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"error": {"message": "no"}}', b'{"usage": "x"}'])
def test_an_answer_without_usage_reports_none(body: bytes) -> None:
    assert usage_of_answer(Api.OPENAI, body) is None and usage_of_answer(Api.ANTHROPIC, body) is None


STREAMS = [
    ("openai chat", Api.OPENAI, _sse(
        (None, {"choices": [{"delta": {"content": "Hé"}}], "usage": None}),
        (None, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}), (None, "[DONE]")),
     Usage(5, 2)),
    ("openai responses", Api.OPENAI, _sse(
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
        ("response.completed", {"type": "response.completed", "response": {"usage": {
            "input_tokens": 30, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 10}}}}), crlf=True),
     Usage(20, 4, 10)),
    ("anthropic", Api.ANTHROPIC, _sse(
        ("message_start", {"type": "message_start", "message": {"usage": {
            "input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 40}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "ünïcode"}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 25}}),
        ("message_stop", {"type": "message_stop"})),
     Usage(12, 25, 300, 40)),
    ("gemini", Api.GEMINI, _sse(
        (None, {"candidates": [{"content": {"parts": [{"text": "a"}]}}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}}),
        (None, {"candidates": [], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9,
                                                    "thoughtsTokenCount": 3}}), crlf=True),
     Usage(4, 12, 0, 0, 3)),
    ("code assist", Api.GEMINI, _sse(
        (None, {"response": {"usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 6}}})),
     Usage(2, 6)),
]


@pytest.mark.parametrize(("api", "stream", "expected"), [s[1:] for s in STREAMS], ids=[s[0] for s in STREAMS])
def test_a_stream_reports_its_usage_split_at_every_byte(api: Api, stream: bytes, expected: Usage) -> None:
    for cut in range(len(stream) + 1):
        reader = StreamUsage(api)
        passed = reader.feed(stream[:cut]) + reader.feed(stream[cut:]) + reader.feed(b"", end=True)
        assert reader.usage == expected, cut
        assert passed == stream  # untouched, and passed on as it came


@pytest.mark.parametrize(("api", "stream", "expected"), [s[1:] for s in STREAMS], ids=[s[0] for s in STREAMS])
def test_a_short_stream_kept_whole_by_the_fast_path_reports_its_usage(api: Api, stream: bytes,
                                                                       expected: Usage) -> None:
    assert usage_of_stream_ends(api, stream) == expected


def test_the_ends_of_a_long_stream_report_its_usage_wherever_they_are_cut() -> None:
    """As the fast path's Lua keeps them: the first bytes up to the end of their last line, the last from the
    start of their first line, nothing between (message_start in one, the last message_delta in the other)."""
    start = _sse(("message_start", {"type": "message_start", "message": {"usage": {
        "input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 300}}}))
    text = _sse(*[("content_block_delta", {"type": "content_block_delta", "delta": {"text": "ü" * 20}})] * 30)
    end = _sse(("message_delta", {"type": "message_delta", "usage": {"output_tokens": 25}}),
               ("message_stop", {"type": "message_stop"}))
    stream = start + text + end
    for keep in range(len(start), len(start) + 120):
        head, tail = stream[:keep], stream[-keep:]
        head, tail = head[:head.rindex(b"\n") + 1], tail[tail.index(b"\n") + 1:]
        assert usage_of_stream_ends(Api.ANTHROPIC, head, tail) == Usage(12, 25, 300), keep


def test_a_stream_split_into_single_bytes_reports_its_usage() -> None:
    _, api, stream, expected = STREAMS[2]
    reader = StreamUsage(api)
    for i in range(len(stream)):
        reader.feed(stream[i:i + 1])
    assert reader.usage == expected


def test_the_usage_chunk_the_gateway_asked_for_is_kept_from_the_client_at_any_split() -> None:
    content = (None, {"choices": [{"delta": {"content": "hi"}}], "usage": None})
    stream = _sse(content, (None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
                  (None, "[DONE]"))
    shown = _sse(content, (None, "[DONE]"))
    for cut in range(len(stream) + 1):
        reader = StreamUsage(Api.OPENAI, hide_usage_chunk=True)
        passed = reader.feed(stream[:cut]) + reader.feed(stream[cut:]) + reader.feed(b"", end=True)
        assert passed == shown and reader.usage == Usage(3, 1), cut


def test_cost_uses_cache_prices_where_the_catalog_has_them() -> None:
    priced = ModelSpec("m", "p", input_price=3.0, output_price=15.0, cache_read_price=0.3, cache_write_price=3.75)
    usage = Usage(input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=400_000)
    assert cost(usage, priced) == pytest.approx(3.0 + 1.5 + 0.6 + 1.5)
    plain = ModelSpec("m", "p", input_price=2.0, output_price=8.0)
    assert cost(Usage(cache_read=1_000_000), plain) == pytest.approx(2.0)
    assert cost(Usage(), plain) == 0.0


def test_a_logged_body_masks_keys_and_tokens_and_is_cut() -> None:
    from extproc.logs import logged_body

    text = logged_body(b'{"messages": [{"content": "my key is sk-proj-abcdef123456789 and Bearer eyJhbGciOi.x.y"}]}')
    assert "abcdef123456789" not in text and "eyJhbGciOi.x.y" not in text and "my key is" in text
    assert logged_body(b"x" * 100_000).endswith("…") and len(logged_body(b"x" * 100_000)) == 64 * 1024 + 1


# -- the fast path: Envoy reads the usage at ANSWER_USAGE_KEYS (as protobuf values), the processor rebuilds it

_counts = st.one_of(st.none(), st.booleans(), st.integers(min_value=-3, max_value=10**7),
                    st.floats(min_value=-1e12, max_value=1e12), st.text(max_size=3))


def _read_as_envoy_does(doc: object) -> dict[str, object]:
    """json_to_metadata's PROTOBUF_VALUE rules: a number (as a double), string or bool at each key path;
    anything else, or a missing key, writes nothing."""
    found: dict[str, object] = {}
    for keys in ANSWER_USAGE_KEYS:
        node = doc
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, bool | str):
            found[".".join(keys)] = node
        elif isinstance(node, int | float):
            found[".".join(keys)] = float(node)
    return found


def _whole(doc: object) -> object:
    """A whole number written as 12.0 is the 12 Envoy's double says it is."""
    if isinstance(doc, dict):
        return {k: _whole(v) for k, v in doc.items()}
    return int(doc) if isinstance(doc, float) and doc.is_integer() else doc


# Generation speed is this machine's load, not the property's: no timing checks.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from([Api.OPENAI, Api.ANTHROPIC]), st.fixed_dictionaries({}, optional={
    "prompt_tokens": _counts, "completion_tokens": _counts, "input_tokens": _counts, "output_tokens": _counts,
    "cache_read_input_tokens": _counts, "cache_creation_input_tokens": _counts,
    "prompt_tokens_details": st.fixed_dictionaries({}, optional={"cached_tokens": _counts}),
    "completion_tokens_details": st.fixed_dictionaries({}, optional={"reasoning_tokens": _counts})}))
def test_the_usage_envoy_reads_from_an_answer_counts_as_the_answer_itself(api: Api, usage: dict[str, object]) -> None:
    body = orjson.dumps({"id": "x", "usage": usage})
    rebuilt = usage_of_document(api, document_of_keys(_read_as_envoy_does(orjson.loads(body))))
    whole = usage_of_answer(api, orjson.dumps(_whole({"id": "x", "usage": usage})))
    if rebuilt is None or whole is None:  # an answer whose usage names none of the keys: no figure either way
        assert (rebuilt or Usage()) == (whole or Usage())
    else:
        assert rebuilt == whole


def test_the_usage_rebuilt_from_its_keys_is_the_answers_shape() -> None:
    assert usage_of_document(Api.OPENAI, document_of_keys({})) is None
    assert document_of_keys({"usage.prompt_tokens": 5.0, "usage.prompt_tokens_details.cached_tokens": 2.0,
                             "usage.completion_tokens": "7"}) == \
        {"usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens": "7"}}
