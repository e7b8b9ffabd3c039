"""The internal representation of a chat request and its answer (whole, or streamed as events), shared by every
API. Pure data.

What one API can say and another cannot is recorded (`Unsupported`), never dropped silently: the writer of
a target API raises it, and resolution takes that target off the candidates for the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRANSLATED = "extproc-translated"
"""Marks thinking this gateway wrote into a client's answer from another provider's: the signature of such an
Anthropic thinking block, inside the id of such a Responses reasoning item. Neither Anthropic nor OpenAI made
them, and both reject them; when the client sends them back, they are left out of a request to its own API."""
TRANSLATED_REASONING = f"rs_{TRANSLATED}_"


class Unsupported(Exception):
    """The request uses something the target API cannot express (the message says what)."""


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    url: str = ""  # an http(s) URL …
    media_type: str = ""  # … or inline data: its type and base64
    data: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: tuple[Text | Image, ...]
    name: str = ""  # Gemini names the function a result answers
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    text: str
    signature: str = ""  # provider-held state: only the provider that wrote it takes it back


Part = Text | Image | ToolCall | ToolResult | Thinking


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # user | assistant
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON schema


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None  # auto | none | required | the name of one tool
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    json_schema: dict[str, Any] | None = None  # {"name", "schema"} of a structured answer
    json_object: bool = False  # any JSON object (OpenAI's json_object)
    reasoning_effort: str | None = None  # low | medium | high
    reasoning_budget: int | None = None  # thinking tokens (Anthropic's budget_tokens, Gemini's thinkingBudget)
    # What the client asked for that only its own API can do (n > 1, logprobs, previous_response_id, …):
    # a request with any of it is never written for another API.
    untranslatable: tuple[str, ...] = ()


def check_translatable(req: ChatRequest) -> None:
    """A request that uses what only its own API can do is never written for another."""
    if req.untranslatable:
        raise Unsupported(", ".join(req.untranslatable))


def parse_data_url(url: str) -> Image:
    """`data:image/png;base64,…` → inline image; any other URL stays a URL."""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return Image(media_type=head[5:], data=data)
    return Image(url=url)


def data_url(image: Image) -> str:
    return image.url or f"data:{image.media_type};base64,{image.data}"


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    id: str
    model: str
    parts: tuple[Part, ...]  # Text, ToolCall, Thinking
    stop_reason: str = "stop"  # stop | length | tool_calls | content_filter
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


# ---------------------------------------------------------------- a streamed answer, as events

@dataclass(frozen=True, slots=True)
class Start:
    id: str
    model: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int  # the call's place among this answer's tool calls
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass(frozen=True, slots=True)
class Finish:
    stop_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider's stream ended before its answer did (a cut, or its own error event)."""

    message: str = ""

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message", CUT)


CUT = "The provider's stream ended before the answer was complete."

Event = Start | TextDelta | ThinkingDelta | CallStart | CallDelta | Finish | Failed
