"""A fake AWS Bedrock runtime that checks what Bedrock checks before it answers: a SigV4 signature recomputed with
botocore's own signer over the request as it arrived (path, host, signed headers and body; any signing mistake is
a 403 in AWS's shape), or a Bedrock API key as a bearer; a model it serves on /model/{id}/invoke or
/invoke-with-response-stream; and Claude's body as Bedrock takes it (anthropic_version, no model, no stream). It
answers as Bedrock does: a whole Messages answer, or the Messages stream in AWS's event-stream framing.

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
                or parts[3] not in ("invoke", "invoke-with-response-stream"):
            return aws_error(404, "UnknownOperationException", "")
        if unquote(parts[2]) not in self.models:
            return aws_error(400, "ValidationException", "The provided model identifier is invalid.")
        try:
            doc = json.loads(recorded.body)
        except ValueError:
            return aws_error(400, "ValidationException", "Malformed input request, please reformat your input "
                                                         "and try again.")
        extraneous = sorted({"model", "stream"} & doc.keys())
        if extraneous:
            return aws_error(400, "ValidationException", f"Malformed input request: #: extraneous key "
                                                         f"[{extraneous[0]}] is not permitted, please reformat "
                                                         "your input and try again.")
        if doc.get("anthropic_version") != VERSION or "max_tokens" not in doc or not doc.get("messages"):
            return aws_error(400, "ValidationException", "Malformed input request: #: required key "
                                                         "[anthropic_version] not found or invalid")
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
        if path.endswith("/invoke"):
            doc = success_body("/messages", {"model": model})
            return 200, {"content-type": "application/json"}, json.dumps(doc).encode()
        events = anthropic_events(model)
        failure, self.stream_exception = self.stream_exception, None
        frames = [chunk(e) for e in (events[:2] if failure else events)]
        if failure:
            frames.append(exception(*failure))
        return 200, {"content-type": EVENT_STREAM}, b"".join(frames)
