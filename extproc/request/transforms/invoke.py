"""Claude on a cloud (Bedrock's InvokeModel, Vertex AI's rawPredict): Anthropic's Messages request as the cloud's
call on the model's own path, and the cloud's errors as Anthropic's. The facts (the version, the calls, the beta
field, the statuses) are the provider's data (`invoke`)."""

from __future__ import annotations

from typing import Any

import orjson

from extproc.core.errors import ClientError
from extproc.core.headers import header_values
from extproc.core.providers import Api, InvokeSpec
from extproc.core.resolve import Decision
from extproc.formats import Endpoint
from extproc.formats.errors import anthropic_error


def invoke_applies(decision: Decision, leaves_in: Api) -> bool:
    """Whether a request that leaves in this API goes as the provider's invoke call (Anthropic's, to a cloud)."""
    return decision.provider.invoke is not None and leaves_in is Api.ANTHROPIC


def invoke_refusal(endpoint: Endpoint, spec: InvokeSpec | None) -> str | None:
    """A token count on a cloud that counts none (Bedrock's InvokeModel) is not sent."""
    if endpoint.counts_tokens and (spec is None or spec.count is None):
        return "counting tokens on this cloud's Claude model (ask Anthropic's API or Vertex AI, or drop the count)"
    return None


def reshape(doc: dict[str, object], spec: InvokeSpec, flags: list[str]) -> str:
    """The Messages body as the cloud takes it, in place (with the beta `flags`, where the cloud takes them in
    the body); the call (path after the model's) it goes to."""
    streams = (doc.get("stream") if spec.keeps_stream else doc.pop("stream", None)) is True
    doc.pop("model", None)  # the path names it
    _version_and_betas(doc, spec, flags)
    return spec.stream if streams else spec.whole


def reshape_count(doc: dict[str, object], spec: InvokeSpec, flags: list[str], served: str) -> tuple[str, str]:
    """A token count as the cloud takes it, in place: the model by its `served` name in the body, since the path
    names the count call; the segment in place of the model's, and the call after it."""
    assert spec.count is not None
    doc["model"] = served
    _version_and_betas(doc, spec, flags)
    segment, colon, call = spec.count.partition(":")
    return segment, colon + call


def _version_and_betas(doc: dict[str, object], spec: InvokeSpec, flags: list[str]) -> None:
    doc["anthropic_version"] = spec.anthropic_version
    if spec.betas is not None and flags:
        doc[spec.betas] = flags


def cloud_betas(client_betas: str | None, spec: InvokeSpec, counting: bool = False) -> list[str]:
    """The client's anthropic-beta flags as the cloud takes them (on its count call when `counting`): renamed to
    the cloud's names, and without those it does not serve (it would refuse the whole request for one), each once,
    in the client's order."""
    accepted = spec.count_betas if counting and spec.count_betas is not None else spec.accepted_betas
    flags: list[str] = []
    for sent in header_values(client_betas):
        flag = spec.renamed_betas.get(sent, sent)
        if flag not in flags and (accepted is None or flag in accepted):
            flags.append(flag)
    return flags


class HeldWhole:
    """A shaper of an answer read whole: it holds the chunks, then `finish` writes the body anew from its JSON (None
    when it is not JSON) and the bytes as they came."""

    collects = False

    def __init__(self) -> None:
        self.failed_status: int | None = None
        self._held = b""

    def feed(self, chunk: bytes, end: bool) -> bytes:
        self._held += chunk
        if not end:
            return b""
        body, self._held = self._held, b""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        return self.finish(doc, body)

    def finish(self, doc: Any, body: bytes) -> bytes:
        raise NotImplementedError


class CloudError(HeldWhole):
    """A cloud's error answer as Anthropic's envelope (a Bedrock `{"message"}`, a Google `{"error": {…}}`), with the
    status Anthropic would answer it with (503 → 529); one already in Anthropic's envelope passes as it came."""

    def __init__(self, status: int, spec: InvokeSpec) -> None:
        super().__init__()
        self._status = status
        self._new = spec.statuses.get(status, status)

    def finish(self, doc: Any, body: bytes) -> bytes:
        if isinstance(doc, dict) and doc.get("type") == "error" and isinstance(doc.get("error"), dict):
            return body  # Anthropic's own, passed on by the cloud
        if self._new != self._status:
            self.failed_status = self._new
        return anthropic_error(ClientError(self._new, "upstream_error", cloud_message(doc, body, self._status)))


class Unchanged:
    """A cloud's answer that needs no reshaping here (a whole answer is Anthropic's; a stream is made
    Anthropic's by the relay)."""

    collects, failed_status = False, None

    def feed(self, chunk: bytes, end: bool) -> bytes:
        return chunk


def cloud_message(doc: object, body: bytes, status: int) -> str:
    """What the cloud said: Bedrock's `message` (or `Message`), Google's `error.message`, else the body's start."""
    if isinstance(doc, dict):
        inner = doc.get("error") if isinstance(doc.get("error"), dict) else doc
        for name in ("message", "Message"):
            said = inner.get(name) if isinstance(inner, dict) else None
            if isinstance(said, str):
                return said
    text = body[:300].decode("utf-8", "replace").strip()
    return text or f"The provider answered {status} with no message."
