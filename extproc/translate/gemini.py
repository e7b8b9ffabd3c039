"""Gemini generateContent ⇄ the internal representation: requests, answers and streams. Pure.

Gemini's function calls carry no ids and its results name the function instead; ids are made up when
reading (`call_<n>_<name>`), and a result written for Gemini takes its name from the call it answers.
The model is in the path, not the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from extproc.formats import errors
from extproc.formats.gemini import unwrapped
from extproc.translate.ir import (
    CallDelta,
    CallStart,
    ChatAnswer,
    ChatRequest,
    Event,
    Failed,
    Finish,
    Image,
    Message,
    Part,
    Start,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolResult,
    Unsupported,
    check_translatable,
)
from extproc.translate.stream import EventReader, failure

OTHER_MODELS_SIGNATURE = "skip_thought_signature_validator"


def signed(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gemini 3 wants the signature of its own thoughts on a turn's first call; a call another provider made
    has none, and Gemini's documented stand-in says so (in a request, and in an answer a Gemini client will
    send back)."""
    first = next((p for p in parts if "functionCall" in p), None)
    if first is not None and "thoughtSignature" not in first:
        first["thoughtSignature"] = OTHER_MODELS_SIGNATURE
    return parts
_EFFORT_BUDGET = {"low": 1024, "medium": 8192, "high": 24576}


def _parts(parts: Any, calls: list[ToolCall]) -> list[Part]:
    out: list[Part] = []
    for p in parts or []:
        if not isinstance(p, dict):
            continue
        if "text" in p:
            out.append(Thinking(str(p["text"]), str(p.get("thoughtSignature", ""))) if p.get("thought")
                       else Text(str(p["text"])))
        elif "inlineData" in p:
            data = p["inlineData"] or {}
            out.append(Image(media_type=str(data.get("mimeType", "")), data=str(data.get("data", ""))))
        elif "fileData" in p:
            out.append(Image(url=str((p["fileData"] or {}).get("fileUri", ""))))
        elif "functionCall" in p:
            fn = p["functionCall"] or {}
            call = ToolCall(str(fn.get("id") or f"call_{len(calls)}_{fn.get('name', '')}"), str(fn.get("name", "")),
                            orjson.dumps(fn.get("args") or {}).decode())
            calls.append(call)
            out.append(call)
        elif "functionResponse" in p:
            fn = p["functionResponse"] or {}
            name = str(fn.get("name", ""))
            call_id = str(fn.get("id") or next((c.id for c in reversed(calls) if c.name == name), name))
            response = fn.get("response")
            text = response.get("content") if isinstance(response, dict) and isinstance(
                response.get("content"), str) else orjson.dumps(response).decode()
            out.append(ToolResult(call_id, (Text(str(text)),), name=name))
    return out


def read_request(doc: dict[str, Any], model: str = "") -> ChatRequest:
    calls: list[ToolCall] = []
    messages = tuple(Message("assistant" if c.get("role") == "model" else "user", tuple(_parts(c.get("parts"), calls)))
                     for c in doc.get("contents") or [] if isinstance(c, dict))
    system = doc.get("systemInstruction") or doc.get("system_instruction") or {}
    texts = tuple(str(p.get("text", "")) for p in system.get("parts") or [] if isinstance(p, dict) and p.get("text"))
    tools = tuple(Tool(str(f.get("name", "")), str(f.get("description", "")),
                       dict(f.get("parameters") or f.get("parametersJsonSchema") or {}))
                  for t in doc.get("tools") or [] for f in t.get("functionDeclarations") or [])
    own = [k for t in doc.get("tools") or [] for k in t if k != "functionDeclarations"]  # googleSearch, codeExecution
    mode_doc = (doc.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = mode_doc.get("allowedFunctionNames") or []
    mode = str(mode_doc.get("mode", "")).upper()
    choice = allowed[0] if mode == "ANY" and len(allowed) == 1 else \
        {"AUTO": "auto", "ANY": "required", "NONE": "none"}.get(mode)
    gen = doc.get("generationConfig") or {}
    schema = gen.get("responseJsonSchema") or gen.get("responseSchema")
    thinking = gen.get("thinkingConfig") or {}
    if gen.get("candidateCount", 1) not in (None, 1):
        own.append("candidateCount > 1")
    return ChatRequest(
        model=model, messages=messages, system=texts, tools=tools, tool_choice=choice,
        max_tokens=gen.get("maxOutputTokens"), temperature=gen.get("temperature"), top_p=gen.get("topP"),
        stop=tuple(gen.get("stopSequences") or ()),
        json_schema={"name": "answer", "schema": schema} if schema else None,
        json_object=not schema and gen.get("responseMimeType") == "application/json",
        reasoning_budget=thinking.get("thinkingBudget") or None, untranslatable=tuple(own))


def _parts_out(parts: tuple[Part, ...], names: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, Text):
            if p.text:
                out.append({"text": p.text})
        elif isinstance(p, Image):
            if p.url:
                raise Unsupported("an image by URL (Gemini takes inline images or uploaded files)")
            out.append({"inlineData": {"mimeType": p.media_type, "data": p.data}})
        elif isinstance(p, ToolCall):
            try:
                args = orjson.loads(p.arguments or "{}")
            except orjson.JSONDecodeError:
                raise Unsupported(f"the arguments of tool call {p.id} are not JSON") from None
            out.append({"functionCall": {"name": p.name, "args": args}})
        elif isinstance(p, ToolResult):
            text = "".join(c.text for c in p.content if isinstance(c, Text))
            out.append({"functionResponse": {"name": p.name or names.get(p.call_id, p.call_id),
                                             "response": {"content": text}}})
    return out


def write_request(req: ChatRequest) -> dict[str, Any]:
    check_translatable(req)
    names = {p.id: p.name for m in req.messages for p in m.parts if isinstance(p, ToolCall)}
    doc: dict[str, Any] = {"contents": [{"role": "model" if m.role == "assistant" else "user",
                                         "parts": signed(_parts_out(m.parts, names))} for m in req.messages]}
    if req.system:
        doc["systemInstruction"] = {"parts": [{"text": s} for s in req.system]}
    if req.tools:
        doc["tools"] = [{"functionDeclarations": [
            {"name": t.name, "description": t.description, **({"parameters": t.parameters} if t.parameters else {})}
            for t in req.tools]}]
    if req.tool_choice is not None:
        config: dict[str, Any] = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(req.tool_choice,
                                                                                                   "ANY")}
        if req.tool_choice not in ("auto", "required", "none"):
            config["allowedFunctionNames"] = [req.tool_choice]
        doc["toolConfig"] = {"functionCallingConfig": config}
    gen: dict[str, Any] = {}
    for key, value in (("maxOutputTokens", req.max_tokens), ("temperature", req.temperature), ("topP", req.top_p)):
        if value is not None:
            gen[key] = value
    if req.stop:
        gen["stopSequences"] = list(req.stop)
    if req.json_schema:
        gen["responseMimeType"] = "application/json"
        gen["responseJsonSchema"] = req.json_schema.get("schema") or {}
    elif req.json_object:
        gen["responseMimeType"] = "application/json"
    budget = req.reasoning_budget or _EFFORT_BUDGET.get(req.reasoning_effort or "")
    if budget:
        gen["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if gen:
        doc["generationConfig"] = gen
    return doc


def path(req: ChatRequest) -> str:
    """Where a request written for Gemini goes: its model, and whether it streams, are in the path (and Gemini
    keeps its version there)."""
    method = ":streamGenerateContent?alt=sse" if req.stream else ":generateContent"
    return f"/v1beta/models/{req.model}{method}"


_FINISH_IN = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
              "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter"}
_FINISH_OUT = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


def read_answer(doc: dict[str, Any], model: str = "") -> ChatAnswer:
    doc = unwrapped(doc)
    candidate = (doc.get("candidates") or [{}])[0]
    parts = tuple(p for p in _parts((candidate.get("content") or {}).get("parts"), [])
                  if isinstance(p, (Text, ToolCall, Thinking)))
    meta = doc.get("usageMetadata") or {}
    cached = int(meta.get("cachedContentTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    reason = _FINISH_IN.get(str(candidate.get("finishReason")), "stop")
    if reason == "stop" and any(isinstance(p, ToolCall) for p in parts):
        reason = "tool_calls"
    return ChatAnswer(str(doc.get("responseId", "")), str(doc.get("modelVersion") or model), parts, reason,
                      int(meta.get("promptTokenCount") or 0) - cached,
                      int(meta.get("candidatesTokenCount") or 0) + thoughts, cached, 0, thoughts)


def write_answer(answer: ChatAnswer) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for p in answer.parts:
        if isinstance(p, Thinking):
            parts.append({"text": p.text, "thought": True})
        elif isinstance(p, Text):
            parts.append({"text": p.text})
        elif isinstance(p, ToolCall):
            parts.append({"functionCall": {"name": p.name, "args": orjson.loads(p.arguments or "{}")}})
    signed(parts)
    prompt = answer.input_tokens + answer.cache_read_tokens
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0,
                            "finishReason": _FINISH_OUT.get(answer.stop_reason, "STOP")}],
            "usageMetadata": {"promptTokenCount": prompt,
                              "candidatesTokenCount": answer.output_tokens - answer.reasoning_tokens,
                              "thoughtsTokenCount": answer.reasoning_tokens,
                              "cachedContentTokenCount": answer.cache_read_tokens,
                              "totalTokenCount": prompt + answer.output_tokens},
            "modelVersion": answer.model, "responseId": answer.id}


# ---------------------------------------------------------------- its stream, event by event

_STREAM_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


class GeminiReader(EventReader):
    def __init__(self, model: str = "") -> None:
        super().__init__()
        self._model = model
        self._started = False
        self._calls = 0
        self._finish = Finish()
        self._done = False

    @property
    def complete(self) -> bool:
        return self._done

    def _read(self, name: str, doc: dict[str, Any]) -> list[Event]:
        doc = unwrapped(doc)
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(Start(str(doc.get("responseId", "")), str(doc.get("modelVersion") or self._model)))
        stop = self._finish.stop_reason
        for candidate in (doc.get("candidates") or [])[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "text" in part:
                    text = str(part["text"])
                    out.append(ThinkingDelta(text) if part.get("thought") else TextDelta(text))
                elif "functionCall" in part:
                    fn = part["functionCall"] or {}
                    index, self._calls = self._calls, self._calls + 1
                    out.append(CallStart(index, str(fn.get("id") or f"call_{index}_{fn.get('name', '')}"),
                                         str(fn.get("name", ""))))
                    out.append(CallDelta(index, orjson.dumps(fn.get("args") or {}).decode()))
                    stop = "tool_calls"
            if candidate.get("finishReason"):
                self._done = True
                if stop != "tool_calls":
                    stop = _STREAM_FINISH.get(str(candidate["finishReason"]), "stop")
        meta = doc.get("usageMetadata")
        if isinstance(meta, dict):  # each chunk reports the answer so far: the last one counts
            cached = int(meta.get("cachedContentTokenCount") or 0)
            self._finish = Finish(stop, int(meta.get("promptTokenCount") or 0) - cached,
                                  int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0),
                                  cached)
        else:
            self._finish = Finish(stop, self._finish.input_tokens, self._finish.output_tokens,
                                  self._finish.cache_read_tokens)
        return out

    def _end(self) -> list[Event]:
        self.finished = True
        return [self._finish]


@dataclass
class GeminiWriter:
    """Gemini's stream (`alt=sse`): every event a whole GenerateContentResponse; a call goes out whole, once its
    arguments are (Gemini has no argument fragments)."""

    model: str = ""
    _calls: dict[int, list[str]] = field(default_factory=dict)  # index → name, then argument fragments

    def write(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for e in events:
            if isinstance(e, Start):
                self.model = self.model or e.model
            elif isinstance(e, TextDelta | ThinkingDelta):
                part: dict[str, Any] = {"text": e.text}
                if isinstance(e, ThinkingDelta):
                    part["thought"] = True
                out.append(self._chunk([part]))
            elif isinstance(e, CallStart):
                self._calls[e.index] = [e.name]
            elif isinstance(e, CallDelta):
                self._calls.setdefault(e.index, [""]).append(e.arguments)
            elif isinstance(e, Failed):
                out.append(errors.gemini_stream_error(failure(e), "gemini"))
            elif isinstance(e, Finish):
                calls = []
                for name, *fragments in self._calls.values():
                    try:
                        args = orjson.loads("".join(fragments) or "{}")
                    except orjson.JSONDecodeError:
                        args = {}
                    calls.append({"functionCall": {"name": name, "args": args}})
                signed(calls)
                prompt = e.input_tokens + e.cache_read_tokens
                out.append(self._chunk(calls, finish=_FINISH_OUT.get(e.stop_reason, "STOP"), usage={
                    "promptTokenCount": prompt, "candidatesTokenCount": e.output_tokens,
                    "cachedContentTokenCount": e.cache_read_tokens, "totalTokenCount": prompt + e.output_tokens}))
        return b"".join(out)

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None,
               usage: dict[str, int] | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        doc: dict[str, Any] = {"candidates": [candidate], "modelVersion": self.model}
        if usage:
            doc["usageMetadata"] = usage
        return b"data: " + orjson.dumps(doc) + b"\r\n\r\n"
