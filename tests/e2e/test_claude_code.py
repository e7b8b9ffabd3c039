"""The real Claude Code (pinned in tests/clis, installed by make test) through the gateway: an OpenAI model
serving it, tools and all, and an Anthropic 429 answered by an OpenAI model within the same request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.fakes import FakeProvider

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
                   {"id": "an-model", "provider": "an", "context_window": 200000, "capabilities": capabilities}],
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
