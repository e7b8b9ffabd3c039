"""A cloud's own chat API for the models that do not take Anthropic's (Bedrock's Converse: Llama, Mistral, Nova,
gpt-oss…): a request that leaves in OpenAI's chat API (the client's, or translated into it) is written in Converse
and sent to the model's call; the answer (whole, streamed, or an error) is read back into OpenAI's chat answer, which
the translation, when there is one, turns into the client's. The facts (the calls, the stop reasons) are the
provider's data (`converse`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from extproc.core.errors import ClientError
from extproc.core.providers import Api, ConverseSpec
from extproc.core.resolve import Decision
from extproc.formats import Endpoint, error_body
from extproc.request.transforms.invoke import HeldWhole, cloud_message
from extproc.translate import converse, openai_chat
from extproc.translate.ir import Unsupported
from extproc.translate.stream import StreamTranslator
from extproc.translate.transform import APIS, read_request


def converse_applies(decision: Decision, leaves_in: str | None) -> bool:
    """Whether a request that leaves as this client endpoint (`chat`, …) goes as the provider's Converse call."""
    return decision.provider.converse is not None and leaves_in == "chat"


def converse_refusal(endpoint: Endpoint, doc: Mapping[str, Any]) -> str | None:
    """What of the request Converse cannot say (None: it can all go)."""
    if endpoint.name not in APIS:
        return None
    try:
        converse.write_request(read_request(endpoint.name, dict(doc), "", doc.get("stream") is True))
    except Unsupported as exc:
        return str(exc)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        return "a field of the request is not in the shape its API defines"
    return None


def rewrite(doc: dict[str, Any], spec: ConverseSpec) -> tuple[dict[str, Any], str, bool]:
    """An OpenAI chat body as Converse's; the call it goes to, and whether the client's stream asked for its usage."""
    req = openai_chat.read_request(doc)
    options = doc.get("stream_options")
    usage = req.stream and isinstance(options, dict) and options.get("include_usage") is True
    return converse.write_request(req), spec.stream if req.stream else spec.whole, usage


def answer_maker(spec: ConverseSpec, model: str, include_usage: bool) -> Any:
    """(streamed, status) → the shaper that makes a Converse answer OpenAI's chat answer."""
    answer_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"  # Converse gives its answers none
    reasons = {**converse.STOP_REASONS, **spec.stop_reasons}  # a provider's data names only what it changes

    def answer(streamed: bool, status: int) -> ConverseError | ConverseWhole | StreamTranslator:
        if status >= 400:
            return ConverseError(status)
        if streamed:
            return StreamTranslator(converse.ConverseReader(model, reasons, answer_id),
                                    openai_chat.OpenAIChatWriter(include_usage, model))
        return ConverseWhole(model, reasons, answer_id)
    return answer


class ConverseWhole(HeldWhole):
    """A whole Converse answer as OpenAI's chat completion."""

    def __init__(self, model: str, stop_reasons: Mapping[str, str], answer_id: str) -> None:
        super().__init__()
        self._model, self._reasons, self._id = model, stop_reasons, answer_id

    def finish(self, doc: Any, body: bytes) -> bytes:
        if not isinstance(doc, dict):
            return error_body(Api.OPENAI, ClientError(502, "upstream_invalid_answer",
                                                      "The provider's answer was not a Converse answer."))
        return orjson.dumps(openai_chat.write_answer(converse.read_answer(doc, self._model, self._reasons, self._id)))


class ConverseError(HeldWhole):
    """A cloud's error answer (`{"message"}`) in OpenAI's envelope, with its status."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self._status = status

    def finish(self, doc: Any, body: bytes) -> bytes:
        return error_body(Api.OPENAI, ClientError(self._status, "upstream_error",
                                                  cloud_message(doc, body, self._status)))
