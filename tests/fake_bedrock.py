"""A fake AWS Bedrock runtime that checks what Bedrock checks before it answers: a SigV4 signature recomputed with
botocore's own signer over the request as it arrived (path, host, signed headers and body; any signing mistake is
a 403 in AWS's shape), or a Bedrock API key as a bearer; a model it serves on /model/{id}/invoke or
/invoke-with-response-stream; and Claude's body as Bedrock takes it (anthropic_version, no model, no stream). It
answers as Bedrock does: a whole Messages answer, or the Messages stream in AWS's event-stream framing. Other models
on /converse and /converse-stream: the body checked as Converse checks it (its own fields only, turns alternating
from the user's, no blank text, a tool config whenever tool blocks are used), answered with a Converse answer or
ConverseStream's events: a tool call when tools are offered and no result has come back, else text.

botocore decodes event streams but has no encoder: `frame` writes one (prelude, headers, payload, CRC-32s) as the
specification lays it out, and the gateway reads it back with botocore's parser, which checks every checksum."""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
import zlib
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from tests.fakes import Answer, FakeProvider, Recorded, messages_stream, success_body

VERSION = "bedrock-2023-05-31"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
# Beta flags Bedrock serves on Claude's InvokeModel (Anthropic-only ones, such as oauth or prompt-caching-scope, are
# refused: "invalid beta flag").
SERVED_BETAS = frozenset({"claude-code-20250219", "interleaved-thinking-2025-05-14", "context-1m-2025-08-07",
                          "context-management-2025-06-27", "effort-2025-11-24", "tool-search-tool-2025-10-19",
                          "fine-grained-tool-streaming-2025-05-14", "computer-use-2025-01-24"})


def aws_error(status: int, kind: str, message: str) -> Answer:
    """An error as Bedrock answers it: the kind in x-amzn-ErrorType, the body a bare message."""
    return status, {"content-type": "application/json", "x-amzn-errortype": kind + _CORAL}, \
        json.dumps({"message": message}).encode()


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: string-valued headers (type 7), then the payload, CRC-32 guarded."""
    encoded = b"".join(struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                       for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk(event: dict[str, Any]) -> bytes:
    """A `chunk` event carrying one Anthropic stream event, base64 in `bytes`, as Bedrock sends it."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "abcdef"})
    return frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                 payload.encode())


def exception(name: str, message: str) -> bytes:
    return frame({":exception-type": name, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


def anthropic_events(model: str) -> list[dict[str, Any]]:
    """The Messages stream's events, as Bedrock carries them (its metrics on the last)."""
    events = [json.loads(line[6:]) for line in messages_stream(model).decode().splitlines()
              if line.startswith("data: ")]
    events[-1]["amazon-bedrock-invocationMetrics"] = {"inputTokenCount": 3, "outputTokenCount": 4,
                                                      "invocationLatency": 120, "firstByteLatency": 40}
    return events


class FakeBedrock(FakeProvider):
    def __init__(self, region: str, keys: dict[str, tuple[str, str | None]], models: tuple[str, ...],
                 api_key: str | None = None) -> None:
        """`keys`: access key id → (secret key, session token or None); `models`: the ids (or inference profiles)
        it serves; `api_key`: a Bedrock API key it also takes, as a bearer."""
        super().__init__("bedrock")
        self.region, self.keys, self.models, self.api_key = region, keys, models, api_key
        self.stream_exception: tuple[str, str] | None = None  # the next stream ends with it after two events
        self.signed: list[str] = []  # the access key id of each request it took

    def refusal(self, recorded: Recorded) -> Answer | None:
        refused = self._unauthenticated(recorded)
        if refused is not None:
            return refused
        bare = recorded.path.partition("?")[0]
        parts = bare.split("/")
        if recorded.method != "POST" or len(parts) != 4 or parts[1] != "model" \
                or parts[3] not in ("invoke", "invoke-with-response-stream", "converse", "converse-stream"):
            return aws_error(404, "UnknownOperationException", "")
        if unquote(parts[2]) not in self.models:
            return aws_error(400, "ValidationException", "The provided model identifier is invalid.")
        try:
            doc = json.loads(recorded.body)
        except ValueError:
            return aws_error(400, "ValidationException", "Malformed input request, please reformat your input "
                                                         "and try again.")
        if parts[3].startswith("converse"):
            why = converse_refusal(doc)
            return None if why is None else aws_error(400, "ValidationException", why)
        extraneous = sorted({"model", "stream"} & doc.keys())
        if extraneous:
            return aws_error(400, "ValidationException", f"Malformed input request: #: extraneous key "
                                                         f"[{extraneous[0]}] is not permitted, please reformat "
                                                         "your input and try again.")
        if doc.get("anthropic_version") != VERSION or "max_tokens" not in doc or not doc.get("messages"):
            return aws_error(400, "ValidationException", "Malformed input request: #: required key "
                                                         "[anthropic_version] not found or invalid")
        if not set(doc.get("anthropic_beta") or ()) <= SERVED_BETAS:  # one unknown flag fails the whole request
            return aws_error(400, "ValidationException", "invalid beta flag")
        return None

    def _unauthenticated(self, recorded: Recorded) -> Answer | None:
        authorization = recorded.headers.get("authorization", "")
        if self.api_key is not None and authorization == f"Bearer {self.api_key}":
            self.signed.append("api-key")
            return None
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, day, region, service, _ = fields.get("Credential", "////").split("/")
        if access_key not in self.keys:
            return aws_error(403, "UnrecognizedClientException", "The security token included in the request is "
                                                                 "invalid.")
        secret, token = self.keys[access_key]
        if token is not None and recorded.headers.get("x-amz-security-token") != token:
            return aws_error(403, "UnrecognizedClientException", "The security token included in the request is "
                                                                 "invalid.")
        stamp = recorded.headers.get("x-amz-date", "")
        try:
            when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return aws_error(403, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.")
        if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > 300 or day != stamp[:8]:
            return aws_error(403, "InvalidSignatureException", "Signature expired.")
        if region != self.region or service != "bedrock":
            return aws_error(403, "InvalidSignatureException", f"Credential should be scoped to a valid region "
                                                               f"and service ({region}/{service}).")
        if fields.get("Signature") != self._signature(recorded, fields["SignedHeaders"].split(";"), secret, token,
                                                      stamp):
            return aws_error(403, "InvalidSignatureException", "The request signature we calculated does not match "
                                                               "the signature you provided.")
        self.signed.append(access_key)
        return None

    def _signature(self, recorded: Recorded, signed: list[str], secret: str, token: str | None, stamp: str) -> str:
        """botocore's signature for the request as it arrived, over the headers it says it signed."""
        if "host" not in signed or "x-amz-date" not in signed:
            return ""
        headers = {name: recorded.headers.get(name, "") for name in signed}
        request = AWSRequest(method=recorded.method, url=f"https://{headers['host']}{recorded.path}",
                             data=recorded.body, headers=headers)
        request.context["timestamp"] = stamp
        signer = SigV4Auth(ReadOnlyCredentials("", secret, token), "bedrock", self.region)
        canonical = signer.canonical_request(request)
        return str(signer.signature(signer.string_to_sign(request, canonical), request))

    def _answer(self, path: str, body: bytes) -> Answer:
        with self._lock:
            scripted = bool(self._script)
        if scripted:
            return super()._answer(path, body)
        model = unquote(path.partition("?")[0].split("/")[2])
        if "/converse" in path:
            failure, self.stream_exception = self.stream_exception, None
            return converse_answer(json.loads(body), model, path.endswith("/converse-stream"), failure)
        if path.endswith("/invoke"):
            doc = success_body("/messages", {"model": model})
            return 200, {"content-type": "application/json"}, json.dumps(doc).encode()
        events = anthropic_events(model)
        failure, self.stream_exception = self.stream_exception, None
        frames = [chunk(e) for e in (events[:2] if failure else events)]
        if failure:
            frames.append(exception(*failure))
        return 200, {"content-type": EVENT_STREAM}, b"".join(frames)


# ---------------------------------------------------------------- Converse

_CONVERSE_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                    "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
                    "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"}
CONVERSE_USAGE = {"inputTokens": 11, "outputTokens": 6, "totalTokens": 17}


def converse_refusal(doc: Any) -> str | None:
    """Why Bedrock would refuse this Converse body (None: it takes it)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or not doc["messages"]:
        return "1 validation error detected: Value at 'messages' failed to satisfy constraint: Member must not be null"
    extraneous = sorted(doc.keys() - _CONVERSE_FIELDS)
    if extraneous:
        return f"Malformed input request: extraneous key [{extraneous[0]}] is not permitted"
    roles = [m.get("role") for m in doc["messages"]]
    if roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:], strict=False)) \
            or not set(roles) <= {"user", "assistant"}:
        return "A conversation must start with a user message and alternate between user and assistant roles."
    blocks = [b for m in doc["messages"] for b in m.get("content") or [{}]]
    if any(not b or b.get("text") == "" for b in blocks) or any(not m.get("content") for m in doc["messages"]):
        return "The text field in the ContentBlock object is blank. Add text to the text field, and try again."
    if any("toolUse" in b or "toolResult" in b for b in blocks) and "toolConfig" not in doc:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def converse_event(name: str, payload: dict[str, Any]) -> bytes:
    """One ConverseStream event, padded as Bedrock pads them."""
    return frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps({**payload, "p": "abcdefgh"}).encode())


def converse_answer(doc: dict[str, Any], model: str, stream: bool, failure: tuple[str, str] | None = None) -> Answer:
    """A tool call when tools are offered and the last turn carries no result, else text naming the model (and the
    result it was given); `failure`: the stream ends with this exception after its first two events."""
    last = doc["messages"][-1]["content"]
    results = [c["text"] for b in last if "toolResult" in b for c in b["toolResult"]["content"] if "text" in c]
    tools = (doc.get("toolConfig") or {}).get("tools") or []
    call = {"toolUseId": "tooluse_bdrk_1", "name": tools[0]["toolSpec"]["name"]} if tools and not results else None
    text = f"hello from {model}" + (f": {results[0]}" if results else "")
    if not stream:
        block = {"toolUse": {**call, "input": {"city": "Lima"}}} if call else {"text": text}
        return 200, {"content-type": "application/json"}, json.dumps({
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": "tool_use" if call else "end_turn", "usage": CONVERSE_USAGE,
            "metrics": {"latencyMs": 120}}).encode()
    frames = [converse_event("messageStart", {"role": "assistant"})]
    if call:
        frames += [converse_event("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": call}}),
                   *(converse_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": f}}})
                     for f in ('{"city":', ' "Lima"}'))]
    else:
        half = len(text) // 2
        frames += [converse_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}})
                   for t in (text[:half], text[half:])]
    frames += [converse_event("contentBlockStop", {"contentBlockIndex": 0}),
               converse_event("messageStop", {"stopReason": "tool_use" if call else "end_turn"}),
               converse_event("metadata", {"usage": CONVERSE_USAGE, "metrics": {"latencyMs": 120}})]
    if failure:
        frames = [*frames[:2], exception(*failure)]
    return 200, {"content-type": EVENT_STREAM}, b"".join(frames)
