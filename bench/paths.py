"""The deployment's paths, beside the demo's: a client key, streams of 100 events, a Claude login, each with
what it sends, what its gateway is configured with, and how a good answer looks (checked before measuring).

Pure apart from `start_oauth` (a fake OAuth server in this process, from the tests) and `stream_fake_command`.
The harness (run.py) starts the processes; the suite (suite.py) measures the same targets in more rounds.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STREAM_FAKE = Path(__file__).resolve().parent / "stream_fake.js"
STREAM_EVENTS = 100
STREAM_CONCURRENCY = 32
MESSAGES_PATH = "/v1/messages"
CLAUDE_MODEL = "claude-sonnet-5-5"  # a catalog model on anthropic: Claude Code's, and the messages stream's
KEY_NAME = "bench"
LOGIN_ID = "claude-bench"
CLAUDE_CODE_VERSION = "2.1.197"
BILLING_BLOCK = f"x-anthropic-billing-header: cc_version={CLAUDE_CODE_VERSION}.bench; cc_entrypoint=cli;"
CLAUDE_CODE_IDENTITY = "You are Claude Code, Anthropic's official CLI for Claude."


# ------------------------------------------------------------------------------------------ requests


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def chat_stream_body(chat_body: bytes) -> bytes:
    """The chat request, streamed, asking for the usage chunk at the end (what accounting reads)."""
    return _compact({**json.loads(chat_body), "stream": True, "stream_options": {"include_usage": True}})


def messages_stream_body(messages_body: bytes) -> bytes:
    """The Messages request, streamed, for a Claude model (untranslated: an Anthropic provider serves it)."""
    return _compact({**json.loads(messages_body), "model": CLAUDE_MODEL, "stream": True})


def claude_code_body(size: int) -> bytes:
    """What Claude Code sends (its shape as captured from 2.1.197): the billing block first in the system prompt,
    then its identity, then the prompt; metadata.user_id a JSON string. Padded to about `size` bytes."""
    def build(filler: str) -> bytes:
        return _compact({
            "model": CLAUDE_MODEL, "max_tokens": 16, "stream": False,
            "system": [{"type": "text", "text": BILLING_BLOCK},
                       {"type": "text", "text": CLAUDE_CODE_IDENTITY, "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Answer in one word. " + filler}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Reply with pong."}]}],
            "metadata": {"user_id": json.dumps({"device_id": "bench-device", "session_id": "bench-session"})},
        })
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    filler = (words * (size // len(words) + 1))[: max(0, size - len(build("")))]
    return build(filler)


def claude_code_headers() -> dict[str, str]:
    """Claude Code's own headers, beside the client key it sends as a bearer token."""
    return {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
            "x-app": "cli", "user-agent": f"claude-cli/{CLAUDE_CODE_VERSION} (external, cli)"}


ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


# ------------------------------------------------------------------------------------------ gateways


def keyed_extra(client_key: str) -> dict[str, Any]:
    """The default config with one client key: the same requests, each checked against it."""
    return {"clients": {"keys": [{"name": KEY_NAME, "key": client_key}]}}


def traced_extra(otlp_port: int) -> dict[str, Any]:
    """The default config with tracing on, every request sampled, exported over OTLP/gRPC to a local sink."""
    return {"tracing": {"endpoint": f"http://127.0.0.1:{otlp_port}", "protocol": "grpc", "sample": 1.0}}


def limited_extra(client_key: str) -> dict[str, Any]:
    """The default config with one client key limited in tokens per minute (never reached): each request is held
    against the shared count before it goes and charged after (the full path)."""
    return {"clients": {"keys": [{"name": KEY_NAME, "key": client_key, "tpm": 10**12}]}}


def stream_extra(stream_port: int, provider_key: str) -> dict[str, Any]:
    """The default config with openai and anthropic on the streaming fake, each with an API key."""
    base_url = f"http://127.0.0.1:{stream_port}"
    return {"providers": {"openai": {"base_url": base_url, "api_key": provider_key},
                          "anthropic": {"base_url": base_url, "api_key": provider_key}}}


def login_extra(store: Path, token_url: str, fake_port: int) -> dict[str, Any]:
    """The default config with a Claude login and no Anthropic key: Claude Code's requests go on the login."""
    return {"auth": {"store": str(store)}, "oauth": {"claude": {"token_url": token_url}},
            "providers": {"anthropic": {"base_url": f"http://127.0.0.1:{fake_port}", "api_key": ""}}}


def seed_login(store: Path, tokens: dict[str, Any]) -> None:
    """An account store holding one Claude Pro/Max login, as `extproc auth login claude` leaves it (0600)."""
    store.write_text(json.dumps({"version": 1, "accounts": [{
        "id": LOGIN_ID, "kind": "claude", "email": "bench@example.com", "plan": "max",
        "access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
        "expires_at": time.time() + 8 * 3600}]}))
    store.chmod(0o600)


def start_oauth() -> Any:
    """The tests' fake OAuth server (a thread of this process): it mints the login and answers any refresh, so a
    run never reaches a real identity server."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fake_oauth import FakeOAuth

    return FakeOAuth()


def claude_client_id() -> str:
    from extproc.config.data import builtin_flow_data

    return str(builtin_flow_data()["claude"]["client_id"])


# ------------------------------------------------------------------------------------------ fakes


def anthropic_answer(model: str = CLAUDE_MODEL) -> str:
    return json.dumps({"id": "msg_bench", "type": "message", "role": "assistant", "model": model,
                       "content": [{"type": "text", "text": "pong"}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": {"input_tokens": 230, "output_tokens": 1}},
                      separators=(",", ":"))


def messages_routes(login_token: str | None) -> list[dict[str, Any]]:
    """The fake provider's Messages routes: an answer in Anthropic's shape only to the login's bearer token, and
    Anthropic's 401 to anything else, so a login request that went without its token shows as an error."""
    if login_token is None:
        return []
    json_type = [{"header": {"key": "content-type", "value": "application/json"},
                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    refused = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": "invalid token"}})
    return [
        {"match": {"prefix": MESSAGES_PATH, "headers": [
            {"name": "authorization", "string_match": {"exact": f"Bearer {login_token}"}}]},
         "direct_response": {"status": 200, "body": {"inline_string": anthropic_answer()}},
         "response_headers_to_add": json_type},
        {"match": {"prefix": MESSAGES_PATH},
         "direct_response": {"status": 401, "body": {"inline_string": refused}},
         "response_headers_to_add": json_type},
    ]


def stream_fake_command(port: int) -> list[str] | None:
    """The streaming fake (Node.js: it writes 100 events per answer faster than Python could), or None without
    node on PATH."""
    node = shutil.which("node")
    return None if node is None else [node, str(STREAM_FAKE), str(port), str(STREAM_EVENTS)]


# ------------------------------------------------------------------------------------------ checks


def stream_problem(status: int, content_type: str, text: str, last: str) -> str | None:
    """Why a streamed answer is not a whole stream of STREAM_EVENTS text events ending with `last`, or None."""
    if status != 200 or not content_type.startswith("text/event-stream"):
        return f"status {status}, content-type {content_type!r}"
    datas = [line for line in text.splitlines() if line.startswith("data:")]
    if len(datas) < STREAM_EVENTS or last not in datas[-1]:
        return f"{len(datas)} events, the last {datas[-1:]!r} (expected at least {STREAM_EVENTS}, ending {last!r})"
    return None
