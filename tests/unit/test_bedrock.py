"""The pure parts of Claude on a cloud: Bedrock's event stream read into Anthropic's SSE (however its bytes are
split, with checksums checked), the invoke call's body and path, the kinds' config, and SigV4 over what leaves."""

from __future__ import annotations

import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from extproc.config import parse_settings
from extproc.core.errors import ConfigError
from extproc.core.providers import InvokeSpec
from extproc.core.settings import AwsAuth
from extproc.formats.bedrock import BedrockStream
from extproc.request.sigv4 import pack_keys, signed_headers
from extproc.request.transforms.invoke import CloudError, cloud_betas, reshape
from tests.fake_bedrock import anthropic_events, chunk, exception

ERRORS = {"throttlingException": 529}
BEDROCK = InvokeSpec("bedrock-2023-05-31", "/invoke", "/invoke-with-response-stream", betas="anthropic_beta",
                     statuses={503: 529})


def sse_events(text: bytes) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.decode().split("\n\n"):
        if block.strip():
            kind, data = block.split("\n")
            events.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_an_event_stream_split_anywhere_reads_as_anthropics_stream() -> None:
    events = anthropic_events("m")
    framed = b"".join(chunk(e) for e in events)
    stream = BedrockStream(ERRORS)
    out = b"".join(stream.feed(framed[i:i + 7]) for i in range(0, len(framed), 7))
    read = sse_events(out)
    assert [kind for kind, _ in read] == [e["type"] for e in events]
    assert "amazon-bedrock-invocationMetrics" not in read[-1][1]  # Bedrock's addition is not Anthropic's
    assert read[0][1] == events[0]


def test_an_exception_ends_the_stream_with_anthropics_error_event() -> None:
    stream = BedrockStream(ERRORS)
    out = stream.feed(chunk(anthropic_events("m")[0]) + exception("throttlingException", "slow down"))
    kind, doc = sse_events(out)[-1]
    assert kind == "error" and doc == {"type": "error", "error": {"type": "overloaded_error", "message": "slow down"}}
    assert stream.feed(chunk(anthropic_events("m")[1])) == b""  # nothing follows an error event


def test_a_frame_that_fails_its_checksum_ends_the_stream() -> None:
    framed = bytearray(chunk(anthropic_events("m")[0]))
    framed[-1] ^= 0xFF
    kind, doc = sse_events(BedrockStream(ERRORS).feed(bytes(framed)))[-1]
    assert kind == "error" and doc["error"]["type"] == "api_error"  # type: ignore[index]


def test_the_invoke_body_names_no_model_and_carries_the_version_and_betas() -> None:
    doc = {"model": "claude-x", "stream": True, "max_tokens": 5, "messages": []}
    assert reshape(doc, BEDROCK, ["a-2025", "b-2026"]) == "/invoke-with-response-stream"
    assert doc == {"max_tokens": 5, "messages": [], "anthropic_version": "bedrock-2023-05-31",
                   "anthropic_beta": ["a-2025", "b-2026"]}
    vertex = InvokeSpec("vertex-2023-10-16", ":rawPredict", ":streamRawPredict", keeps_stream=True)
    doc = {"model": "claude-x", "stream": True, "max_tokens": 5}
    assert reshape(doc, vertex, ["a-2025"]) == ":streamRawPredict" and doc["stream"] is True and "model" not in doc
    assert "anthropic_beta" not in doc  # Vertex takes the header
    doc = {"max_tokens": 5}
    reshape(doc, BEDROCK, [])
    assert "anthropic_beta" not in doc  # no flag: no field


def test_a_cloud_gets_only_the_betas_it_serves_under_its_own_names() -> None:
    spec = InvokeSpec("v", "/i", "/s",
                      accepted_betas=frozenset({"claude-code-20250219", "tool-search-tool-2025-10-19"}),
                      renamed_betas={"advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"})
    sent = " claude-code-20250219,oauth-2025-04-20, advanced-tool-use-2025-11-20,,tool-search-tool-2025-10-19"
    assert cloud_betas(sent, spec) == ["claude-code-20250219", "tool-search-tool-2025-10-19"]
    assert cloud_betas("oauth-2025-04-20", spec) == [] and cloud_betas(None, spec) == []
    assert cloud_betas("x-1, y-2", BEDROCK) == ["x-1", "y-2"]  # a cloud whose data names none: every flag goes


def test_the_clouds_data_drops_anthropic_only_betas_and_a_user_may_accept_more() -> None:
    settings = parse_settings({"providers": {
        "bedrock-1": {"kind": "bedrock", "region": "us-east-1"},
        "bedrock-2": {"kind": "bedrock", "region": "us-east-1", "invoke": {"accepted_betas": ["new-flag-2027-01-01"]}},
        "vertex-1": {"kind": "vertex", "project": "my-project", "location": "global"}}}, env={})
    claude_code = ("claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,"
                   "prompt-caching-scope-2026-01-05")
    for name in ("bedrock-1", "vertex-1"):
        spec = settings.providers[name].invoke
        assert spec is not None
        assert cloud_betas(claude_code, spec) == ["claude-code-20250219", "interleaved-thinking-2025-05-14"], name
    vertex = settings.providers["vertex-1"].invoke
    assert vertex is not None and vertex.count == "count-tokens:rawPredict"
    assert cloud_betas("context-1m-2025-08-07", vertex) == ["context-1m-2025-08-07"]
    assert cloud_betas("context-1m-2025-08-07", vertex, counting=True) == []  # Vertex's count call takes none
    custom = settings.providers["bedrock-2"].invoke
    assert custom is not None and custom.betas == "anthropic_beta" and custom.anthropic_version == "bedrock-2023-05-31"
    assert cloud_betas("new-flag-2027-01-01,claude-code-20250219", custom) == ["new-flag-2027-01-01"]


def test_a_clouds_error_becomes_anthropics_with_anthropics_status() -> None:
    overloaded = CloudError(503, BEDROCK)
    body = overloaded.feed(b'{"message":"Bedrock is unable to process your request."}', True)
    assert json.loads(body) == {"type": "error", "error": {"type": "overloaded_error",
                                                           "message": "Bedrock is unable to process your request."}}
    assert overloaded.failed_status == 529
    google = CloudError(429, BEDROCK)
    said = json.loads(google.feed(b'{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}',
                                  True))
    assert said["error"] == {"type": "rate_limit_error", "message": "Quota exceeded"}
    assert google.failed_status is None
    own = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    assert CloudError(400, BEDROCK).feed(own, True) == own


def test_the_signature_covers_the_path_host_and_body_as_they_leave() -> None:
    auth, body = AwsAuth("eu-west-1"), b'{"max_tokens":5}'
    path = "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    host = "bedrock-runtime.eu-west-1.amazonaws.com"
    headers = signed_headers(pack_keys("AKIDEXAMPLE", "secret", "tok"), auth, host, "POST", path, body)
    assert headers["x-amz-security-token"] == "tok" and "SignedHeaders=host;x-amz-date;x-amz-security-token" in \
        headers["authorization"]
    again = AWSRequest(method="POST", url=f"https://{host}{path}", data=body,
                       headers={"host": host, "x-amz-date": headers["x-amz-date"], "x-amz-security-token": "tok"})
    again.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "tok"), "bedrock", "eu-west-1")
    expected = signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)
    assert headers["authorization"].endswith(f"Signature={expected}")


def test_a_bedrock_provider_is_configured_from_its_region() -> None:
    settings = parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "eu-central-1"}}}, {})
    provider = settings.providers["aws"]
    assert provider.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert provider.deployments["claude-sonnet-4-5"] == "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert provider.upstream_path(next(iter(provider.apis)), "/invoke", "claude-sonnet-4-5") == \
        "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    [credential] = [c for c in settings.credentials if c.provider == "aws"]
    assert credential.aws == AwsAuth("eu-central-1") and credential.secret == ""
    keyed = parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "us-east-1", "api_key": "ABSK1",
                                                  "inference_profile": "global"}}}, {})
    assert [c.aws for c in keyed.credentials if c.provider == "aws"] == [None]
    assert keyed.providers["aws"].deployments["claude-opus-5-5"] == "global.anthropic.claude-opus-5-5"


def test_a_bedrock_providers_mistakes_are_named_all_at_once() -> None:
    with pytest.raises(ConfigError) as found:
        parse_settings({"providers": {"aws": {"kind": "bedrock", "region": "Mars", "inference_profile": "moon",
                                              "models": ["gpt-5"], "base_url": "https://x"}}}, {})
    said = str(found.value)
    for part in ("providers.aws.region", "providers.aws.inference_profile", "providers.aws.base_url"):
        assert part in said, said


@pytest.mark.parametrize("count", ["count-tokens", ":rawPredict", "a/b:rawPredict"])
def test_a_count_call_that_is_not_a_segment_and_its_call_is_refused_at_start(count: str) -> None:
    with pytest.raises(ConfigError, match=r"vertex-1\.invoke\.count: .* e\.g\. count-tokens:rawPredict"):
        parse_settings({"providers": {"vertex-1": {"kind": "vertex", "project": "my-project", "location": "global",
                                                   "invoke": {"count": count}}}}, env={})
