"""The real Claude Code (pinned in tests/clis, installed by make test) through the gateway: an OpenAI model
serving it, tools and all; an Anthropic 429 answered by an OpenAI model within the same request; and its own
request reaching Anthropic as it sent it on a Claude Pro/Max login."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extproc.config.data import builtin_flow_data
from tests.conftest import Stack
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider
from tests.waits import eventually

CLAUDE = Path(__file__).resolve().parents[2] / ".venv" / "clis" / "node_modules" / ".bin" / "claude"
CLIENT_KEY = "client-key-of-claude-code"


@pytest.fixture(scope="module")
def claude() -> Path:
    """The pinned Claude Code. Missing, the test fails (never skips): `make test` installs it, and so does the
    command below, given npm (.ci/run installs Node.js and npm)."""
    if not CLAUDE.exists():
        npm = "" if shutil.which("npm") else " (npm is not on PATH: install Node.js and npm first)"
        pytest.fail(f"Claude Code is not installed at {CLAUDE}: run `make .venv/clis/.installed` (npm ci of "
                    f"tests/clis; `make test` does it){npm}")
    return CLAUDE


@pytest.fixture(scope="module")
def stack(fakes: dict[str, FakeProvider], make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    capabilities = ["tools", "streaming", "vision", "reasoning"]  # Claude Code asks for thinking
    return make_module_stack({"discovery": False, "strategy": "none", "providers": {
        "oa": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"}, "api_key": "k-oa-claude-code"},
        "an": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"}, "auth": "x-api-key",
               "api_key": "k-an-claude-code", "headers": {"anthropic-version": "2023-06-01"}}},
        "models": [{"id": "oa-model", "provider": "oa", "context_window": 200000, "capabilities": capabilities},
                   {"id": "an-model", "provider": "an", "context_window": 200000, "capabilities": capabilities},
                   # No fallback to translate to: its requests can go fast.
                   {"id": "an-solo", "provider": "an", "context_window": 200000, "capabilities": capabilities}],
        "fallbacks": {"an-model": ["oa-model"]}})


def run_claude(claude: Path, stack: Stack, home: Path, prompt: str, model: str, *extra: str) -> dict[str, Any]:
    """`claude -p` as a user runs it against the gateway, in a home of its own; its JSON result."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": stack.url,
           "ANTHROPIC_API_KEY": CLIENT_KEY, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}
    done = subprocess.run([str(claude), "-p", prompt, "--model", model, "--output-format", "json", *extra],
                          env=env, cwd=home, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def tool_call_stream(call_id: str, name: str, arguments: dict[str, Any]) -> bytes:
    """An OpenAI chat stream whose answer is one tool call, its arguments in two fragments."""
    text = json.dumps(arguments)
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": text[:5]}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": text[5:]}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    events = [b"data: " + json.dumps({"id": "chatcmpl-cc", "object": "chat.completion.chunk", "created": 1,
                                      "model": "oa-model", **c}).encode() for c in chunks]
    return b"\n\n".join([*events, b"data: [DONE]"]) + b"\n\n"


def test_claude_code_runs_on_an_openai_model_and_its_tool_calls_round_trip(
        claude: Path, stack: Stack, fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the launch code is tangerine-42\n")
    fakes["openai"].script(200, {"content-type": "text/event-stream"},
                           tool_call_stream("call_read_1", "Read", {"file_path": str(notes)}))
    result = run_claude(claude, stack, tmp_path, "What is in notes.txt?", "oa-model", "--allowedTools", "Read")
    assert result["is_error"] is False and result["result"] == "hello from oa-model"
    first, second = fakes["openai"].requests[-2:]
    assert first.path == second.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer k-oa-claude-code" and CLIENT_KEY not in json.dumps(first.headers)
    sent = first.json()
    assert sent["model"] == "oa-model" and sent["stream"] is True
    assert "Read" in {t["function"]["name"] for t in sent["tools"]}  # Claude Code's tools, in OpenAI's shape
    history = second.json()["messages"]
    call = next(m for m in history if m.get("tool_calls"))
    assert call["tool_calls"][0]["id"] == "call_read_1" and call["tool_calls"][0]["function"]["name"] == "Read"
    answer = next(m for m in history if m["role"] == "tool")
    assert answer["tool_call_id"] == "call_read_1" and "tangerine-42" in json.dumps(answer["content"])
    asked = [r for r in stack.usage_records() if r.get("requested_model")]
    assert all(r["route"].endswith("translated messages->chat") for r in asked[-2:])


def test_claude_code_on_an_anthropic_model_with_an_api_key_is_served_by_envoy_alone_once_asked_for(
        claude: Path, stack: Stack, fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    def fast_records() -> list[dict[str, Any]]:
        return [r for r in stack.usage_records() if r["served_model"] == "an-solo" and r["route"].endswith("; fast")]

    first = run_claude(claude, stack, tmp_path, "say hi", "an-solo")
    assert first["is_error"] is False and not fast_records()  # the first request of a model is the processor's
    eventually(lambda: "fast messages an-solo stream" in stack.fast_routes(), "Envoy holds the model's route")
    result = run_claude(claude, stack, tmp_path, "say hi again", "an-solo")
    assert result["is_error"] is False and result["result"] == "hello from an-solo"
    found = eventually(fast_records, "its requests' records, from Envoy's answers log")
    assert all(r["streamed"] and r["client"] is None for r in found), found
    sent = fakes["anthropic"].requests[-1]
    assert sent.path == "/v1/messages?beta=true" and sent.headers["x-api-key"] == "k-an-claude-code"
    assert sent.json()["system"][0]["text"].startswith("x-anthropic-billing-header:")  # its request, as sent


def test_an_anthropic_429_is_answered_by_an_openai_model_within_the_same_claude_code_request(
        claude: Path, stack: Stack, fakes: dict[str, FakeProvider], tmp_path: Path) -> None:
    fakes["anthropic"].script(429, {"retry-after": "30"}, b'{"type":"error","error":{"type":"rate_limit_error",'
                                                          b'"message":"window used up"}}')
    result = run_claude(claude, stack, tmp_path, "say hi", "an-model")
    assert result["is_error"] is False and result["result"] == "hello from oa-model"
    assert len(fakes["anthropic"].requests) == 1 and len(fakes["openai"].requests) == 1  # one request, two attempts
    assert fakes["openai"].requests[0].json()["model"] == "oa-model"
    record = [r for r in stack.usage_records() if r.get("requested_model")][-1]
    assert (record["attempts"], record["served_model"], record["status"]) == (2, "oa-model", 200)
    assert record["route"] == "fallback:chain; translated messages->chat"


def test_claude_codes_own_request_reaches_anthropic_on_a_claude_login_as_it_sent_it(
        claude: Path, fakes: dict[str, FakeProvider], oauth: FakeOAuth,
        make_stack: Callable[[dict[str, Any]], Stack], tmp_path: Path) -> None:
    """On a Claude Pro/Max login (the default: it serves Claude Code's own requests only), the request Anthropic
    receives is the one Claude Code sent: its billing block first, its betas and identity, its metadata; only the
    credential changed (the login's bearer and Anthropic's OAuth beta instead of the client's key)."""
    issued = oauth.issue_tokens(builtin_flow_data()["claude"]["client_id"])
    store = tmp_path / "accounts.json"
    store.write_text(json.dumps({"version": 1, "accounts": [{
        "id": "claude-max", "kind": "claude", "email": "me@example.com", "plan": "max",
        "access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
        "expires_at": time.time() + 8 * 3600}]}))
    store.chmod(0o600)
    stack = make_stack({"discovery": False, "strategy": "none", "auth": {"store": str(store)},
                        "oauth": {"claude": {"token_url": f"{oauth.base_url}/v1/oauth/token"}},
                        "providers": {"anthropic": {"base_url": fakes["anthropic"].base_url, "api_key": ""}}})
    fakes["anthropic"].reset()
    result = run_claude(claude, stack, tmp_path, "say hi", "claude-sonnet-5-5")
    assert result["is_error"] is False and result["result"] == "hello from claude-sonnet-5-5"
    asked = [r for r in fakes["anthropic"].requests if r.path.startswith("/v1/messages")
             and not r.path.startswith("/v1/messages/count_tokens")]
    assert asked, [r.path for r in fakes["anthropic"].requests]
    for seen in asked:
        body = seen.json()
        system = body["system"]
        assert system[0]["text"].startswith("x-anthropic-billing-header: cc_version="), system[0]  # first, as sent
        assert isinstance(body["metadata"]["user_id"], str)  # Claude Code's own, untouched
        betas = seen.headers["anthropic-beta"].split(",")
        assert "claude-code-20250219" in betas and betas[-1] == "oauth-2025-04-20"  # its betas, then the login's
        assert betas.count("oauth-2025-04-20") == 1
        assert seen.headers["user-agent"].startswith("claude-cli/2.1.197") and seen.headers["x-app"] == "cli"
        assert seen.headers["authorization"] == f"Bearer {issued['access_token']}"
        assert "x-api-key" not in seen.headers and CLIENT_KEY not in json.dumps(seen.headers)
    record = [r for r in stack.usage_records() if r.get("requested_model")][-1]
    assert record["credential"] == "claude-max" and record["status"] == 200
