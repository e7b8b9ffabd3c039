"""Fake providers: real HTTP servers on loopback that record every request and answer like the real API."""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.waits import eventually


class Server(ThreadingHTTPServer):
    """A fake's HTTP server. A client that hangs up before the answer is written (a gateway that gave up on a
    held answer, a timeout under test) is part of the tests, not an error to print a traceback for."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str], bytes]


def wait_for_requests(lock: threading.Lock, requests: list[Recorded], count: int, who: str) -> list[Recorded]:
    """A fake's requests (recorded under `lock`), once there are at least `count`."""
    def received() -> list[Recorded]:
        with lock:
            return list(requests) if len(requests) >= count else []
    return eventually(received, f"{who} receives {count} requests")


def write_whole(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes) -> None:
    """An answer sent whole: its status, its headers and the length of its body, then the body."""
    handler.send_response(status)
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("content-length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def serve_whole(answer: Callable[[Recorded], Answer], tls: ssl.SSLContext | None = None) -> Server:
    """A fake that answers each request whole (status, headers, body) from `answer`, on a free loopback port,
    served from a thread of its own until the caller shuts it down; over TLS with `tls` (a server context)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args: object) -> None:  # keep test output quiet (and tokens out of it)
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            write_whole(self, *answer(Recorded(self.command, self.path,
                                               {k.lower(): v for k, v in self.headers.items()}, body)))

        do_GET = do_POST = _handle  # noqa: N815

    server = Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # a short poll interval so shutdown() returns in milliseconds, not half a second
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@dataclass
class Listing:
    """How the provider answers its model-list endpoint."""

    ids: list[str] = field(default_factory=list)
    status: int = 200
    raw: bytes | None = None  # answer these bytes instead (malformed JSON)
    hold: threading.Event | None = None  # answer only once it is set: a provider slower than any timeout


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error":{"message":"scripted failure"}}'
    delay: float = 0.0  # seconds before answering (a slow provider)
    cut_after: int | None = None  # a stream: the connection drops after this many events, mid-answer
    hold: threading.Event | None = None  # answer only once it is set: a provider stalled until the test says


class FakeProvider:
    """One provider. `script(...)` queues answers; otherwise it answers a success shaped for the path."""

    def __init__(self, name: str, stream_only: bool = False) -> None:
        self.name = name
        self.stream_only = stream_only  # like ChatGPT's Codex backend: a request that does not stream is a 400
        self.requests: list[Recorded] = []  # everything but model-list calls
        self.list_requests: list[Recorded] = []
        self.listing = Listing()
        self._script: deque[Scripted] = deque()
        self._holds: list[threading.Event] = []
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorded = Recorded(self.command, self.path, headers, body)
                refused = provider.refusal(recorded)
                if refused is not None:
                    status, headers, payload = refused
                elif self.command == "GET" and self.path.partition("?")[0].endswith("/models"):
                    status, headers, payload = provider._list_answer(recorded)
                else:
                    provider._record(recorded)
                    status, headers, payload = provider._answer(self.path, body)
                if headers.get("content-type") == "text/event-stream":
                    self._stream(status, headers, payload, headers.pop("x-fake-cut-after", None))
                    return
                write_whole(self, status, headers, payload)

            def _stream(self, status: int, headers: dict[str, str], payload: bytes, cut_after: str | None) -> None:
                """Server-sent events in chunked encoding, one event per chunk, as providers stream."""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                events = [e for e in re.split(rb"(?<=\r\n\r\n)|(?<=[^\r]\n\n)", payload) if e.strip()]
                for i, chunk in enumerate(events):
                    if cut_after is not None and i == int(cut_after):
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the provider drops the connection mid-answer
                        self.close_connection = True
                        return
                    chunk = chunk if chunk.endswith(b"\n\n") else chunk + b"\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = _handle  # noqa: N815

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def refusal(self, recorded: Recorded) -> Answer | None:
        """What the provider refuses before anything else (a missing credential, say); None: nothing."""
        return None

    def script(self, status: int, headers: dict[str, str] | None = None, body: bytes | None = None,
               times: int = 1, delay: float = 0.0, cut_after: int | None = None,
               hold: threading.Event | None = None) -> None:
        """Queue `times` answers. With `hold`, each waits until the event is set (released at the latest by the
        next reset or close): a stall that lasts as long as the test needs, whatever the machine's speed."""
        with self._lock:
            if hold is not None:
                self._holds.append(hold)
            for _ in range(times):
                self._script.append(Scripted(status, headers or {}, body or Scripted(status).body, delay, cut_after,
                                             hold))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.list_requests.clear()
            self._script.clear()
            self.listing = Listing()
        self._release()

    def _release(self) -> None:
        """Let every held answer go: nothing is left waiting after its test."""
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.set()

    def _list_answer(self, recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.list_requests.append(recorded)
            listing = self.listing
            if listing.hold is not None:
                self._holds.append(listing.hold)
        if listing.hold is not None:
            listing.hold.wait()
        if listing.raw is not None:
            return listing.status, {"content-type": "application/json"}, listing.raw
        if listing.status != 200:
            return listing.status, {"content-type": "application/json"}, b'{"error":{"message":"list failed"}}'
        return 200, {"content-type": "application/json"}, json.dumps(model_list(recorded.path, listing.ids)).encode()

    def wait_for(self, count: int) -> list[Recorded]:
        """The requests received, once there are at least `count`."""
        return wait_for_requests(self._lock, self.requests, count, self.name)

    def close(self) -> None:
        self._release()
        self.server.shutdown()
        self.server.server_close()

    def _record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            if scripted.hold is not None:
                scripted.hold.wait()
            time.sleep(scripted.delay)
            headers = {"content-type": "application/json", **scripted.headers}
            if scripted.cut_after is not None:
                headers["x-fake-cut-after"] = str(scripted.cut_after)  # read, and dropped, by the stream writer
            return scripted.status, headers, scripted.body
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        bare = path.partition("?")[0]
        if self.stream_only and doc.get("stream") is not True:
            return 400, {"content-type": "application/json"}, b'{"detail":"Stream must be set to true"}'
        if doc.get("stream") is True and bare.endswith("/chat/completions"):
            options = doc.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return 200, {"content-type": "text/event-stream"}, chat_stream(doc.get("model", ""), usage)
        if doc.get("stream") is True and bare.endswith("/messages"):
            return 200, {"content-type": "text/event-stream"}, messages_stream(doc.get("model", ""))
        if doc.get("stream") is True and bare.endswith("/responses"):
            return 200, {"content-type": "text/event-stream"}, responses_stream(doc.get("model", ""))
        if ":streamGenerateContent" in bare and not bare.startswith("/v1internal:") and "alt=sse" in path:
            model = bare.rsplit("/models/", 1)[1].split(":")[0]
            return 200, {"content-type": "text/event-stream"}, gemini_stream(model)
        if path.startswith("/v1internal:"):  # Code Assist: answers wrapped in {"response": …}
            inner = success_body(f"/v1beta/models/{doc.get('model', '')}:generateContent", {})
            if "alt=sse" in path:
                events = [json.dumps({"response": {**inner, "candidates": [
                    {"content": {"role": "model", "parts": [{"text": word}]}, "index": 0}]}})
                    for word in ("hello", " from", f" {doc.get('model', '')}")]
                return 200, {"content-type": "text/event-stream"}, b"".join(
                    b"data: " + e.encode() + b"\r\n\r\n" for e in events)
            return 200, {"content-type": "application/json"}, json.dumps(
                {"response": inner, "traceId": "t1"}).encode()
        return 200, {"content-type": "application/json"}, json.dumps(success_body(path, doc)).encode()


class FakeAzure(FakeProvider):
    """Azure OpenAI: checks what Azure checks before it answers — the resource's key in `api-key` (401 in Azure's
    error shape), a path of the v1 API (`/openai/v1/…`) or a deployment's (`/openai/deployments/{name}/…`, which
    needs `api-version`: 404 without), and, on either, a deployment it has (404 DeploymentNotFound)."""

    def __init__(self, name: str, key: str | None, deployments: tuple[str, ...],
                 bearer: Callable[[str], bool] | None = None) -> None:
        super().__init__(name)
        self.key, self.deployments, self.bearer = key, deployments, bearer

    def refusal(self, recorded: Recorded) -> Answer | None:
        authorization = recorded.headers.get("authorization", "")
        if "api-key" not in recorded.headers and authorization.startswith("Bearer ") and self.bearer is not None:
            if not self.bearer(authorization[len("Bearer "):]):
                return _azure_error(401, "401", "Access token is missing, invalid, audience is incorrect "
                                                "(https://cognitiveservices.azure.com), or have expired.")
        elif self.key is None or recorded.headers.get("api-key") != self.key:
            return _azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                                            "Make sure to provide a valid key for an active subscription and use a "
                                            "correct regional API endpoint for your resource.")
        bare, _, query = recorded.path.partition("?")
        if bare.startswith("/openai/v1/"):
            if bare == "/openai/v1/models":
                return None
            try:
                deployment = json.loads(recorded.body).get("model")
            except ValueError:
                return _azure_error(400, "BadRequest", "The request body is not JSON.")
        elif found := re.fullmatch(r"/openai/deployments/([^/]+)/(chat/completions|embeddings)", bare):
            if not re.search(r"(^|&)api-version=\d{4}-\d{2}-\d{2}(-preview)?($|&)", query):
                return _azure_error(404, "404", "Resource not found")
            deployment = found.group(1)
        else:
            return _azure_error(404, "404", "Resource not found")
        if deployment not in self.deployments:
            return _azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        return None


def _azure_error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, {"content-type": "application/json"}, body


def chat_stream(model: str, usage: bool = False) -> bytes:
    """An OpenAI chat-completions SSE stream: one word per event, then (when asked, as OpenAI does) a chunk with
    the usage and no choices, then [DONE]."""
    events = []
    for i, word in enumerate(["hello", " from", f" {model}"]):
        chunk: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
                                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": word} if i == 0
                                              else {"content": word}, "finish_reason": None}]}
        if usage:
            chunk["usage"] = None
        events.append(b"data: " + json.dumps(chunk).encode())
    if usage:
        events.append(b"data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                              "model": model, "choices": [], "usage": {
                                                  "prompt_tokens": 11, "completion_tokens": 3,
                                                  "total_tokens": 14}}).encode())
    events.append(b"data: [DONE]")
    return b"\n\n".join(events) + b"\n\n"


WORDS = ("hello", " from", " {model}")  # every fake stream says "hello from <model>", a word per event


def _sse(kind: str | None, doc: dict[str, Any]) -> bytes:
    return (f"event: {kind}\n".encode() if kind else b"") + b"data: " + json.dumps(doc).encode()


def messages_stream(model: str) -> bytes:
    """Anthropic's Messages stream: message_start, one text block filled word by word, message_delta, stop."""
    events = [_sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
        "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})]
    events += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
        "type": "text_delta", "text": w.format(model=model)}}) for w in WORDS]
    events += [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
               _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                      "usage": {"output_tokens": 4}}),
               _sse("message_stop", {"type": "message_stop"})]
    return b"\n\n".join(events) + b"\n\n"


def responses_stream(model: str) -> bytes:
    """OpenAI's Responses stream: created, a message item filled word by word, its done events, completed."""
    text = "".join(WORDS).format(model=model)
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    response = {"id": "resp_1", "object": "response", "created_at": 1, "model": model, "status": "in_progress",
                "output": []}
    events = [_sse("response.created", {"type": "response.created", "response": response}),
              _sse("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                  "item": {**item, "status": "in_progress", "content": []}}),
              _sse("response.content_part.added", {"type": "response.content_part.added", "item_id": "msg_1",
                                                   "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": []}})]
    events += [_sse("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                                   "output_index": 0, "content_index": 0,
                                                   "delta": w.format(model=model)}) for w in WORDS]
    events += [_sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                  "item": item}),
               _sse("response.completed", {"type": "response.completed", "response": {
                   **response, "status": "completed", "output": [item],
                   "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}})]
    return b"\n\n".join(events) + b"\n\n"


def gemini_stream(model: str) -> bytes:
    """Gemini's `alt=sse` stream: a GenerateContentResponse per word, the last with finishReason and usage."""
    events = []
    for i, word in enumerate(WORDS):
        chunk: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [
            {"text": word.format(model=model)}]}, "index": 0}], "modelVersion": model}
        if i == len(WORDS) - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
            chunk["usageMetadata"] = {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
        events.append(_sse(None, chunk))
    return b"\r\n\r\n".join(events) + b"\r\n\r\n"


def model_list(path: str, ids: list[str]) -> dict[str, Any]:
    """A model list in the shape of the API the path belongs to."""
    if path.startswith("/v1beta/"):
        return {"models": [{"name": f"models/{i}", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                            "supportedGenerationMethods": ["embedContent"] if "embed" in i else ["generateContent"]}
                           for i in ids]}
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 1750000000, "owned_by": "fake",
                                        "type": "model", "created_at": "2025-06-15T00:00:00Z"} for i in ids],
            "has_more": False}


def success_body(path: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A minimal well-formed success answer in the API the path belongs to."""
    model = doc.get("model", "")
    bare = path.partition("?")[0]
    if ":generateContent" in bare or ":streamGenerateContent" in bare:
        model = bare.rsplit("/models/", 1)[1].split(":")[0]
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": f"hello from {model}"}]},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
                "modelVersion": model}
    if bare.endswith("/messages"):
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": f"hello from {model}"}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 4}}
    if bare.endswith("/embeddings"):
        vector = {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}
        return {"object": "list", "model": model, "data": [vector],
                "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    if bare.endswith("/responses"):
        return {"id": "resp_1", "object": "response", "created_at": 1, "model": model, "status": "completed",
                "output": [{"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": f"hello from {model}", "annotations": []}]}],
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hello from {model}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
