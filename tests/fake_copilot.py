"""A fake of GitHub Copilot's API and of GitHub's Copilot calls, on one loopback port: a real HTTP server.

Copilot's side (api.githubcopilot.com): GET /models lists each model with the endpoints it is served on (held
while a test clears `lists_open`);
POST /chat/completions, /responses, /embeddings and /v1/messages answer as the real APIs do, and refuse (401) a
Bearer token they do not know. GitHub's side (api.github.com): /copilot_internal/v2/token exchanges a GitHub
token for a short Copilot token, /copilot_internal/user tells the plan's quotas; both take `token <gh>`, and
answer `github_refusal` instead when a test sets it (a rate limit, an account without Copilot).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import secrets_registry
from tests.fakes import (
    Answer,
    Recorded,
    chat_stream,
    messages_stream,
    responses_stream,
    serve_whole,
    success_body,
    wait_for_requests,
)
from tests.waits import HANG_GUARD

CLAUDE = "claude-sonnet-9.9"  # served on Chat Completions and natively on Anthropic's Messages
CODEX = "gpt-9.9-codex"  # served on the Responses API only
EMBED = "text-embedding-9-small"  # an embeddings model (its entry names no endpoints)
DISABLED = "gpt-9.9-preview"  # listed, but the account's policy disables it

MODELS: list[dict[str, Any]] = [
    {"id": CLAUDE, "name": "Claude Sonnet 9.9", "vendor": "Anthropic", "model_picker_enabled": True,
     "policy": {"state": "enabled"}, "supported_endpoints": ["/chat/completions", "/v1/messages"],
     "capabilities": {"family": "claude-sonnet-9.9", "type": "chat",
                      "limits": {"max_context_window_tokens": 200000, "max_output_tokens": 32000,
                                 "max_prompt_tokens": 168000},
                      "supports": {"tool_calls": True, "vision": True, "streaming": True,
                                   "max_thinking_budget": 32000}}},
    {"id": CODEX, "name": "GPT-9.9-Codex", "vendor": "OpenAI", "model_picker_enabled": True,
     "policy": {"state": "enabled"}, "supported_endpoints": ["/responses", "ws:/responses"],
     "capabilities": {"family": "gpt-9.9-codex", "type": "chat",
                      "limits": {"max_context_window_tokens": 400000, "max_output_tokens": 128000},
                      "supports": {"tool_calls": True, "streaming": True, "structured_outputs": True,
                                   "reasoning_effort": ["low", "medium", "high"]}}},
    {"id": EMBED, "name": "Embedding V9 Small", "vendor": "Azure OpenAI", "model_picker_enabled": False,
     "capabilities": {"family": EMBED, "type": "embeddings", "limits": {"max_inputs": 512}, "supports": {}}},
    {"id": DISABLED, "name": "GPT-9.9 Preview", "vendor": "OpenAI", "model_picker_enabled": True,
     "policy": {"state": "disabled"}, "supported_endpoints": ["/chat/completions"],
     "capabilities": {"family": DISABLED, "type": "chat", "limits": {}, "supports": {"streaming": True}}},
]

QUOTA = {"login": "octocat", "copilot_plan": "individual", "quota_reset_date": "2031-05-01",
         "quota_snapshots": {
             "chat": {"entitlement": 0, "remaining": 0, "percent_remaining": 100.0, "unlimited": True},
             "completions": {"entitlement": 0, "remaining": 0, "percent_remaining": 100.0, "unlimited": True},
             "premium_interactions": {"entitlement": 300, "remaining": 75, "percent_remaining": 25.0,
                                      "unlimited": False, "overage_count": 0, "overage_permitted": False}}}


class FakeCopilot:
    def __init__(self) -> None:
        self.github_tokens: set[str] = set()  # taken as they are (a device login's)
        self.app_tokens: set[str] = set()  # an editor's: exchanged only
        self._exchanged: dict[str, str] = {}  # Copilot token → the GitHub token it was exchanged for
        self.requests: list[Recorded] = []  # calls to Copilot's API, model lists aside
        self.list_requests: list[Recorded] = []
        self.github_requests: list[Recorded] = []  # exchanges and quota readings
        self.github_refusal: tuple[int, dict[str, str]] | None = None  # GitHub's answer to a known token, when set
        self.lists_open = threading.Event()  # cleared: the model list is answered only once it is set again
        self.lists_open.set()
        self._lock = threading.Lock()
        self.server = serve_whole(self._answer)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def github_token(self, editor: bool = False) -> str:
        """A GitHub token for a Copilot user: a device login's (taken as it is), or an editor's (exchanged)."""
        token = ("ghu_" if editor else "gho_") + secrets.token_hex(12)
        secrets_registry.secret("a fake GitHub token", token)
        with self._lock:
            (self.app_tokens if editor else self.github_tokens).add(token)
        return token

    def exchanged_for(self, copilot_token: str) -> str | None:
        with self._lock:
            return self._exchanged.get(copilot_token)

    def wait_for(self, count: int) -> list[Recorded]:
        return wait_for_requests(self._lock, self.requests, count, "Copilot")

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.github_refusal = None
        self.lists_open.set()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, seen: Recorded) -> Answer:
        bare = seen.path.partition("?")[0]
        if bare.startswith("/copilot_internal/"):
            return self._github(seen, bare)
        bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            known = bearer in self.github_tokens or bearer in self._exchanged
            (self.list_requests if bare == "/models" else self.requests).append(seen)
        if not known:
            return _json(401, {"error": {"message": "unauthorized: token expired or invalid", "code": "unauthorized"}})
        if bare == "/models":
            self.lists_open.wait(HANG_GUARD)
            return _json(200, {"object": "list", "data": MODELS})
        doc = seen.json() if seen.body else {}
        if bare not in ("/chat/completions", "/responses", "/embeddings", "/v1/messages"):
            return _json(404, {"error": {"message": f"no route {bare}"}})
        if doc.get("stream") is True:
            model = doc.get("model", "")
            stream = {"/chat/completions": lambda: chat_stream(model, True), "/responses": lambda: responses_stream(
                model), "/v1/messages": lambda: messages_stream(model)}[bare]()
            return 200, {"content-type": "text/event-stream"}, stream
        return _json(200, success_body(bare, doc))

    def _github(self, seen: Recorded, bare: str) -> Answer:
        token = seen.headers.get("authorization", "").removeprefix("token ")
        with self._lock:
            self.github_requests.append(seen)
            known = token in self.github_tokens or token in self.app_tokens
        if not known:
            return _json(401, {"message": "Bad credentials"})
        if self.github_refusal is not None:
            status, headers = self.github_refusal
            return status, {"content-type": "application/json", **headers}, b'{"message": "refused"}'
        if bare == "/copilot_internal/user":
            return _json(200, QUOTA)
        if bare == "/copilot_internal/v2/token":
            copilot = "tid=" + secrets.token_hex(16)
            secrets_registry.secret("a fake Copilot token", copilot)
            with self._lock:
                self._exchanged[copilot] = token
            return _json(200, {"token": copilot, "expires_at": int(time.time()) + 1800, "refresh_in": 1500})
        return _json(404, {"message": "Not Found"})


def _json(status: int, doc: Any) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(doc).encode()


@pytest.fixture(scope="module")
def copilot() -> Iterator[FakeCopilot]:
    """One fake Copilot per test module (the conftests offer it; a module starts each test with `fresh_copilot`)."""
    server = FakeCopilot()
    yield server
    server.close()


@pytest.fixture
def fresh_copilot(copilot: FakeCopilot) -> None:
    """Each test starts with no request recorded and nothing held."""
    copilot.reset()
