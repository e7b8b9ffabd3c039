"""Bedrock's Converse API ⇄ the internal representation: the request Bedrock's other models take (Llama, Mistral,
Nova, gpt-oss, DeepSeek, Qwen…), its whole answer, and ConverseStream's events. Pure.

Converse carries no model in the body (the path names it) and no `stream` (the call chooses). It takes images
inline only, and has no structured-answer or reasoning fields common to its models: a request that uses them is
refused (`Unsupported`), never sent without them. A conversation must alternate user and assistant turns: turns of
one role in a row are joined. The stream's events arrive as SSE named by their event type (the relay decodes AWS's
framing); its exceptions as an `error` event, which every reader ends on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from extproc.translate.ir import (
    CallDelta,
    CallStart,
    ChatAnswer,
    ChatRequest,
    Event,
    Finish,
    Image,
    Part,
    Start,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolCall,
    ToolResult,
    Unsupported,
    check_translatable,
)
from extproc.translate.stream import EventReader, position

STOP_REASONS: Mapping[str, str] = {  # Converse's stopReason → the internal one (a provider's data may override)
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_TOOL_CHOICE: Mapping[str, dict[str, Any]] = {"auto": {"auto": {}}, "required": {"any": {}}}


def _image(image: Image) -> dict[str, Any]:
    fmt = _IMAGE_FORMATS.get(image.media_type.lower())
    if image.url or fmt is None:
        raise Unsupported("an image by URL, or not PNG, JPEG, GIF or WebP (Converse takes them inline)")
    return {"image": {"format": fmt, "source": {"bytes": image.data}}}


def _arguments(call: ToolCall) -> Any:
    try:
        return orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        raise Unsupported(f"the arguments of tool call {call.id} are not JSON") from None


def _blocks(parts: tuple[Part, ...]) -> list[dict[str, Any]]:
    """One turn's content blocks. Thinking another turn carried stays out: it is the state of whoever wrote it."""
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, Text):
            if p.text:  # Converse refuses a blank text block
                out.append({"text": p.text})
        elif isinstance(p, Image):
            out.append(_image(p))
        elif isinstance(p, ToolCall):
            out.append({"toolUse": {"toolUseId": p.id, "name": p.name, "input": _arguments(p)}})
        elif isinstance(p, ToolResult):
            content = [{"text": c.text} if isinstance(c, Text) else _image(c) for c in p.content]
            result: dict[str, Any] = {"toolUseId": p.call_id, "content": content or [{"text": ""}]}
            if p.is_error:
                result["status"] = "error"
            out.append({"toolResult": result})
    return out


def _turns(req: ChatRequest) -> list[dict[str, Any]]:
    """The messages, each role's run joined into one turn (Converse refuses two user turns in a row)."""
    turns: list[dict[str, Any]] = []
    for m in req.messages:
        blocks = _blocks(m.parts)
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"].extend(blocks)
        elif blocks:
            turns.append({"role": m.role, "content": blocks})
    return turns


def _tool_config(req: ChatRequest) -> dict[str, Any] | None:
    if not req.tools:
        return None
    if req.tool_choice == "none":
        raise Unsupported("tool_choice none (Converse cannot forbid the tools it is given)")
    config: dict[str, Any] = {"tools": [{"toolSpec": {
        "name": t.name, **({"description": t.description} if t.description else {}),
        "inputSchema": {"json": t.parameters or {"type": "object"}}}} for t in req.tools]}
    if req.tool_choice is not None:
        config["toolChoice"] = _TOOL_CHOICE.get(req.tool_choice) or {"tool": {"name": req.tool_choice}}
    return config


def write_request(req: ChatRequest) -> dict[str, Any]:
    check_translatable(req)
    if req.json_schema or req.json_object:
        raise Unsupported("a structured (JSON) answer (Converse has no response format)")
    if req.reasoning_effort or req.reasoning_budget:
        raise Unsupported("reasoning effort or a thinking budget (Converse has no field for them)")
    doc: dict[str, Any] = {"messages": _turns(req)}
    if req.system:
        doc["system"] = [{"text": s} for s in req.system if s]
    inference: dict[str, Any] = {key: value for key, value in (("maxTokens", req.max_tokens),
                                                               ("temperature", req.temperature),
                                                               ("topP", req.top_p)) if value is not None}
    if req.stop:
        inference["stopSequences"] = list(req.stop)
    if inference:
        doc["inferenceConfig"] = inference
    tools = _tool_config(req)
    if tools is not None:
        doc["toolConfig"] = tools
    return doc


def _reasoning(block: Any) -> str:
    """The text of a reasoningContent block (a delta's `text`, an answer's `reasoningText.text`)."""
    if not isinstance(block, dict):
        return ""
    inner = block.get("reasoningText")
    return str((inner if isinstance(inner, dict) else block).get("text") or "")


def read_answer(doc: dict[str, Any], model: str, stop_reasons: Mapping[str, str] = STOP_REASONS,
                answer_id: str = "") -> ChatAnswer:
    """A Converse answer; Converse gives it no id (`answer_id`: the one the client gets) and names no model."""
    message = (doc.get("output") or {}).get("message") or {}
    parts: list[Part] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            parts.append(Text(str(block["text"])))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            parts.append(ToolCall(str(use.get("toolUseId", "")), str(use.get("name", "")),
                                  orjson.dumps(use.get("input") or {}).decode()))
        elif "reasoningContent" in block and (text := _reasoning(block["reasoningContent"])):
            parts.append(Thinking(text))
    usage = doc.get("usage") or {}
    return ChatAnswer(answer_id, model, tuple(parts), stop_reasons.get(str(doc.get("stopReason")), "stop"),
                      *_tokens(usage))


def _tokens(usage: Any) -> tuple[int, int, int, int]:
    """(input, output, cache read, cache write): Converse counts cached input apart from `inputTokens`."""
    if not isinstance(usage, dict):
        return 0, 0, 0, 0
    return tuple(int(usage.get(k) or 0) for k in ("inputTokens", "outputTokens", "cacheReadInputTokens",
                                                   "cacheWriteInputTokens"))  # type: ignore[return-value]


# ---------------------------------------------------------------- its stream, event by event

class ConverseReader(EventReader):
    """ConverseStream's events, named by their type: a block's index is its place in the answer, a tool call's
    arguments come as fragments of JSON text, the usage in the `metadata` event after `messageStop`."""

    def __init__(self, model: str = "", stop_reasons: Mapping[str, str] = STOP_REASONS, answer_id: str = "") -> None:
        super().__init__()
        self._model, self._reasons, self._id = model, stop_reasons, answer_id
        self._started = False
        self._finish = Finish()
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(self._id, self._model))
        index = position(doc.get("contentBlockIndex"))
        if name == "contentBlockStart":
            use = (doc.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                out.append(CallStart(index, str(use.get("toolUseId") or f"call_{index}"), str(use.get("name", ""))))
        elif name == "contentBlockDelta":
            delta = doc.get("delta") or {}
            if delta.get("text"):
                out.append(TextDelta(str(delta["text"])))
            elif isinstance(delta.get("toolUse"), dict) and delta["toolUse"].get("input"):
                out.append(CallDelta(index, str(delta["toolUse"]["input"])))
            elif text := _reasoning(delta.get("reasoningContent")):
                out.append(ThinkingDelta(text))
        elif name == "messageStop":
            self._done = True
            f = self._finish
            self._finish = Finish(self._reasons.get(str(doc.get("stopReason")), "stop"), f.input_tokens,
                                  f.output_tokens, f.cache_read_tokens, f.cache_write_tokens)
        elif name == "metadata" and isinstance(doc.get("usage"), dict):
            self._finish = Finish(self._finish.stop_reason, *_tokens(doc["usage"]))
        return out

    def _end(self) -> list[Event]:
        self.finished = True
        return [self._finish]
