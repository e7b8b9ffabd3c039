"""AWS Bedrock and Claude on Vertex AI as providers, through a real Envoy. A fake Bedrock recomputes every
request's SigV4 signature with botocore's own signer (any signing mistake is a 403) and answers streams in AWS's
event-stream framing; the gateway signs with keys from AWS's standard chain (here, the environment). The Anthropic
and OpenAI SDKs are served whole and streamed, with tools; Bedrock's throttles and overloads reach each client in its
own envelope; without AWS credentials nothing goes upstream. The flagship chain — Claude on Anthropic, then on
Bedrock, then on Vertex AI — answers one request whose first two attempts are throttled, and the real Claude Code
runs on a Bedrock Claude model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import secrets_registry
from tests.conftest import Stack, Stacks
from tests.e2e.test_claude_code import claude, run_claude  # noqa: F401 (the pinned Claude Code, as a fixture)
from tests.e2e.test_vertex import account, tokens  # noqa: F401 (a service account Google's fake trusts)
from tests.fake_bedrock import FakeBedrock, aws_error
from tests.fake_google import FakeGoogleToken, FakeVertex, ServiceAccount
from tests.fakes import FakeProvider
from tests.waits import eventually

REGION = "us-west-2"
MODEL = "claude-sonnet-4-5"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # through the region's cross-region profile
PATH = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0"
KEY_ID = "ASIAFAKEGATEWAY00001"  # temporary keys, as a role hands out: a session token goes with them
SECRET = "fake/secret+" + base64.b64encode(b"x" * 24).decode()
TOKEN = "FwoGZXIvYXdzEfake" + "t" * 40
API_KEY = "ABSKZmFrZS1iZWRyb2NrLWtleQ" + "k" * 20
for _kind, _value in (("aws secret key", SECRET), ("aws session token", TOKEN), ("bedrock api key", API_KEY)):
    secrets_registry.secret(_kind, _value)  # never in a log
# The gateway's environment: these keys, and nothing else of AWS's chain (no files, no instance metadata).
NO_CHAIN = {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds",
            "AWS_EC2_METADATA_DISABLED": "true"}
KEYS = {**NO_CHAIN, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
CHAT = [{"role": "user", "content": "hi"}]
# A throttle or an overload barely cools the credential: each request of a test meets its own scripted answer.
QUICK = {"backoff_base": 0.001, "backoff_max": 0.001, "server_error_cooldown": 0.001}
PROJECT, LOCATION = "acme-llm-prod", "us-east5"
TEAM_MODEL = "team-claude"  # the team's name for a Claude model only its Vertex AI serves


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    server = FakeBedrock(REGION, {KEY_ID: (SECRET, TOKEN)}, (BEDROCK_ID,), api_key=API_KEY)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset(bedrock: FakeBedrock) -> None:
    bedrock.reset()
    bedrock.signed.clear()


def bedrock_provider(bedrock: FakeBedrock, **extra: Any) -> dict[str, Any]:
    return {"kind": "bedrock", "region": REGION, "endpoint": bedrock.base_url, **extra}


@pytest.fixture(scope="module")
def stack(bedrock: FakeBedrock, make_module_stack: Stacks) -> Stack:
    """A team that buys Claude through Bedrock alone, its keys from the environment."""
    return make_module_stack({"discovery": False, "strategy": "none",
                              "providers": {"bedrock": bedrock_provider(bedrock)}}, KEYS)


def client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key="client-own-key", max_retries=0)


def signed_only(bedrock: FakeBedrock) -> bool:
    """The last request went signed with the gateway's keys, and the client's key did not go."""
    sent = bedrock.requests[-1].headers
    return bedrock.signed[-1] == KEY_ID and sent["authorization"].startswith("AWS4-HMAC-SHA256 ") \
        and "x-api-key" not in sent and "client-own-key" not in json.dumps(sent)


def test_the_fake_refuses_what_bedrock_refuses(bedrock: FakeBedrock) -> None:
    """botocore's own signature passes; a wrong secret, or a body changed after signing, is a 403."""
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": CHAT}).encode()
    url = f"{bedrock.base_url}{PATH}/invoke"

    def send(secret: str, sent_body: bytes) -> httpx.Response:
        request = AWSRequest(method="POST", url=url, data=body, headers={"host": f"127.0.0.1:{bedrock.port}"})
        SigV4Auth(Credentials(KEY_ID, secret, TOKEN), "bedrock", REGION).add_auth(request)
        return httpx.post(url, content=sent_body, headers=dict(request.headers.items()))

    assert send(SECRET, body).status_code == 200
    wrong = send("not-the-secret", body)
    assert wrong.status_code == 403 and wrong.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    assert send(SECRET, body.replace(b"10", b"99")).status_code == 403
    assert httpx.post(url, content=body).status_code == 403
    assert bedrock.signed == [KEY_ID]


def test_the_anthropic_sdk_is_served_by_bedrock_signed_whole_streamed_and_with_tools(
        stack: Stack, bedrock: FakeBedrock) -> None:
    an = client(stack)
    tools = [{"name": "get_weather", "description": "The weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    bedrock.script(200, {"content-type": "application/json"}, json.dumps({
        "id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lima"}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 5}}).encode())
    answer = an.messages.create(model=MODEL, max_tokens=100, messages=CHAT, tools=tools,  # type: ignore[arg-type]
                                extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"})
    assert answer.stop_reason == "tool_use" and answer.content[0].input == {"city": "Lima"}  # type: ignore[union-attr]
    sent = bedrock.requests[-1]
    assert sent.path == f"{PATH}/invoke" and signed_only(bedrock)
    doc = sent.json()
    assert doc["anthropic_version"] == "bedrock-2023-05-31" and "model" not in doc and "stream" not in doc
    assert doc["anthropic_beta"] == ["fine-grained-tool-streaming-2025-05-14"]
    assert doc["tools"][0]["name"] == "get_weather"

    with an.messages.stream(model=MODEL, max_tokens=100, messages=CHAT) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"hello from {BEDROCK_ID}" and final.usage.output_tokens == 4
    assert bedrock.requests[-1].path == f"{PATH}/invoke-with-response-stream" and signed_only(bedrock)
    record = stack.usage_records()[-1]
    assert (record["provider"], record["served_model"], record["output_tokens"]) == ("bedrock", MODEL, 4)


def test_the_openai_sdk_reaches_bedrock_translated(stack: Stack, bedrock: FakeBedrock) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == f"hello from {BEDROCK_ID}"
    assert "translated chat->messages" in raw.headers["x-extproc-route"]
    assert bedrock.requests[-1].path == f"{PATH}/invoke" and signed_only(bedrock)
    chunks = list(oa.chat.completions.create(model=MODEL, messages=CHAT, stream=True,  # type: ignore[arg-type]
                                             stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"hello from {BEDROCK_ID}"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert bedrock.requests[-1].path == f"{PATH}/invoke-with-response-stream" and signed_only(bedrock)


def test_a_bedrock_api_key_goes_as_a_bearer(bedrock: FakeBedrock, make_stack: Stacks) -> None:
    stack = make_stack({"discovery": False, "strategy": "none",
                        "providers": {"bedrock": bedrock_provider(bedrock, api_key=API_KEY)}}, NO_CHAIN)
    assert client(stack).messages.create(model=MODEL, max_tokens=10, messages=CHAT).content  # type: ignore[arg-type]
    assert bedrock.signed == ["api-key"] and bedrock.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


def test_throttles_and_overloads_reach_each_client_in_its_own_envelope(bedrock: FakeBedrock,
                                                                       make_stack: Stacks) -> None:
    """Each case asks for a model of its own (all served by one Bedrock id): what health learns of one error (from
    Envoy's access log, a moment after the client has its answer) cannot meet the next case's request."""
    one, two, three, four = "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "claude-opus-5-5"
    stack = make_stack({"discovery": False, "strategy": "none", "failover": {"attempts": 1}, "providers": {
        "bedrock": bedrock_provider(bedrock, models={m: BEDROCK_ID for m in (one, two, three, four)})}}, KEYS)
    an, oa = client(stack), openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0)
    bedrock.script(*aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(anthropic.RateLimitError) as throttled:
        an.messages.create(model=one, max_tokens=10, messages=CHAT)  # type: ignore[arg-type]
    assert throttled.value.body["error"] == {"type": "rate_limit_error",  # type: ignore[index]
                                             "message": "Too many requests, please wait before trying again."}
    bedrock.script(*aws_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request."))
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        an.messages.create(model=two, max_tokens=10, messages=CHAT)  # type: ignore[arg-type]
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    bedrock.script(*aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(openai.RateLimitError) as openai_throttled:
        oa.chat.completions.create(model=three, messages=CHAT)  # type: ignore[arg-type]
    assert "Too many requests" in openai_throttled.value.message
    assert isinstance(openai_throttled.value.body, dict) and openai_throttled.value.body["type"] == "rate_limit_error"
    bedrock.stream_exception = ("throttlingException", "Too many tokens, please wait before trying again.")
    with pytest.raises(anthropic.APIStatusError) as midway, \
            an.messages.stream(model=four, max_tokens=10, messages=CHAT) as stream:  # type: ignore[arg-type]
        "".join(stream.text_stream)
    assert midway.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert "Too many tokens" in midway.value.body["error"]["message"]  # type: ignore[index]


def test_without_aws_credentials_nothing_goes_upstream(bedrock: FakeBedrock, make_stack: Stacks) -> None:
    stack = make_stack({"discovery": False, "strategy": "none",
                        "providers": {"bedrock": bedrock_provider(bedrock)}}, NO_CHAIN)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client(stack).messages.create(model=MODEL, max_tokens=10, messages=CHAT)  # type: ignore[arg-type]
    assert refused.value.status_code == 503 and "no AWS credentials" in refused.value.message
    chat = httpx.post(stack.url + "/v1/chat/completions", json={"model": MODEL, "messages": CHAT})
    assert chat.status_code == 503 and "no AWS credentials" in chat.json()["error"]["message"]
    assert not bedrock.requests


# ---------------------------------------------------------------- Claude on Vertex AI, and the flagship chain

@pytest.fixture(scope="module")
def vertex(tokens: FakeGoogleToken) -> Iterator[FakeVertex]:  # noqa: F811
    server = FakeVertex(tokens, PROJECT, LOCATION, ("claude-sonnet-4-5@20250929",))
    yield server
    server.close()


@pytest.fixture(scope="module")
def chain(bedrock: FakeBedrock, vertex: FakeVertex, account: ServiceAccount,  # noqa: F811
          fakes: dict[str, FakeProvider],
          make_module_stack: Stacks) -> Stack:
    """Claude three ways, in this order: Anthropic's API (a key), Bedrock, Vertex AI."""
    return make_module_stack({"discovery": False, "strategy": "none", "health": QUICK, "providers": {
        "anthropic": {"base_url": fakes["anthropic"].base_url, "api_key": "k-anthropic-flagship"},
        "bedrock": bedrock_provider(bedrock),
        "vertex": {"kind": "vertex", "project": PROJECT, "location": LOCATION,
                   "models": {MODEL: "claude-sonnet-4-5@20250929", TEAM_MODEL: "claude-sonnet-4-5@20250929"},
                   "credentials_file": str(account.file), "endpoint": vertex.base_url}}}, KEYS)


def test_the_flagship_chain_answers_one_request_anthropic_then_bedrock_then_vertex(
        chain: Stack, fakes: dict[str, FakeProvider], vertex: FakeVertex, bedrock: FakeBedrock) -> None:
    vertex.reset()
    fakes["anthropic"].script(429, body=b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}')
    bedrock.script(*aws_error(429, "ThrottlingException", "Too many requests"))
    betas = "claude-code-20250219,oauth-2025-04-20,prompt-caching-scope-2026-01-05,advanced-tool-use-2025-11-20"
    answer = client(chain).messages.with_raw_response.create(model=MODEL, max_tokens=10,  # type: ignore[arg-type]
                                                             messages=CHAT, extra_headers={"anthropic-beta": betas})
    assert answer.parse().content[0].text == "hello from claude-sonnet-4-5@20250929"  # type: ignore[union-attr]
    assert answer.headers["x-extproc-provider"] == "vertex"
    # One request, three attempts: Anthropic's 429, Bedrock's throttle, Vertex AI's answer.
    assert len(fakes["anthropic"].requests) == 1 and len(bedrock.requests) == 1 and len(vertex.requests) == 1
    sent = vertex.requests[-1]
    assert sent.path == vertex.claude_prefix() + "claude-sonnet-4-5%4020250929:rawPredict"
    assert sent.json()["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json()
    assert sent.headers["authorization"].startswith("Bearer ya29.")
    # Each gets the client's betas it serves, by its own name (one it does not serve fails a whole request).
    assert fakes["anthropic"].requests[-1].headers["anthropic-beta"] == betas
    assert bedrock.requests[-1].json()["anthropic_beta"] == ["claude-code-20250219", "tool-search-tool-2025-10-19"]
    assert "anthropic-beta" not in bedrock.requests[-1].headers  # Bedrock takes them in the body
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,tool-search-tool-2025-10-19"
    record = eventually(lambda: [r for r in chain.usage_records() if r.get("requested_model") == MODEL],
                        "the request's usage record")[-1]
    assert (record["attempts"], record["provider"], record["status"]) == (3, "vertex", 200)


def test_claude_on_vertex_streams_anthropics_own_events(chain: Stack, vertex: FakeVertex) -> None:
    """A model only Vertex AI serves (a name of the team's for a Vertex Claude id)."""
    vertex.reset()
    with client(chain).messages.stream(model=TEAM_MODEL, max_tokens=10, messages=CHAT) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == "hello from claude-sonnet-4-5@20250929"
        assert stream.get_final_message().usage.output_tokens == 4
    sent = vertex.requests[-1]
    assert sent.path == vertex.claude_prefix() + "claude-sonnet-4-5%4020250929:streamRawPredict"
    assert sent.json()["stream"] is True and "model" not in sent.json()


def test_a_token_count_is_vertex_ais_count_call_and_bedrock_refuses_one_before_it_goes(
        chain: Stack, stack: Stack, vertex: FakeVertex, bedrock: FakeBedrock) -> None:
    vertex.reset()
    counted = client(chain).messages.count_tokens(model=TEAM_MODEL, messages=CHAT,  # type: ignore[arg-type]
                                                  extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert counted.input_tokens == len(json.dumps(CHAT))  # the fake's count of the messages it was sent
    sent = vertex.requests[-1]
    assert sent.path == vertex.claude_prefix() + "count-tokens:rawPredict"
    assert sent.json()["model"] == "claude-sonnet-4-5@20250929" and "anthropic-beta" not in sent.headers
    # Bedrock's InvokeModel counts nothing (Anthropic's own Bedrock client refuses a count too): told, not sent.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(stack).messages.count_tokens(model=MODEL, messages=CHAT)  # type: ignore[arg-type]
    assert "counting tokens" in refused.value.message and not bedrock.requests


def test_claude_code_runs_on_a_bedrock_claude_model(claude: Path, stack: Stack,  # noqa: F811
                                                   bedrock: FakeBedrock, tmp_path: Path) -> None:
    result = run_claude(claude, stack, tmp_path, "say hi", MODEL)
    assert result["is_error"] is False and result["result"] == f"hello from {BEDROCK_ID}"
    sent = bedrock.requests[-1]
    assert sent.path == f"{PATH}/invoke-with-response-stream" and signed_only(bedrock)
    doc = sent.json()
    assert doc["system"][0]["text"].startswith("x-anthropic-billing-header:")  # its own request, reshaped only
    assert "model" not in doc and doc["anthropic_version"] == "bedrock-2023-05-31"
    # It believes it talks to Anthropic and names Anthropic-only betas too: only those Bedrock serves go on.
    assert "claude-code-20250219" in doc["anthropic_beta"] and "anthropic-beta" not in sent.headers
