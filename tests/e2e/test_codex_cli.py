"""A Codex login end to end through Envoy: the real Codex CLI (pinned in tests/clis, installed by make test) and
the openai SDK against a fake ChatGPT backend that holds every request to the backend's rules, and whose
answers report the login's windows in headers and in the stream's codex.rate_limits event."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from extproc.config import parse_settings
from tests import fakes as fakes_module
from tests.conftest import Stack
from tests.e2e.test_logins import cli, login_by_browser, login_config, no_token_in, write_config
from tests.fake_oauth import FakeOAuth
from tests.fakes import FakeProvider, Recorded
from tests.waits import eventually

CODEX = Path(__file__).resolve().parents[2] / ".venv" / "clis" / "node_modules" / ".bin" / "codex"
CLIENT_KEY = "client-key-of-codex-cli"
MODEL = "gpt-6-luna"
CHATGPT = parse_settings({}, {}).providers["chatgpt"]
REFUSED, LITE = CHATGPT.drop_fields, CHATGPT.lite_header or ""
RESET = int(time.time()) + 3 * 3600


@pytest.fixture(scope="module")
def codex() -> Path:
    """The pinned Codex CLI. Missing, the test fails (never skips): `make test` installs it, given npm."""
    if not CODEX.exists():
        npm = "" if shutil.which("npm") else " (npm is not on PATH: install Node.js and npm first)"
        pytest.fail(f"the Codex CLI is not installed at {CODEX}: run `make .venv/clis/.installed` (npm ci of "
                    f"tests/clis; `make test` does it){npm}")
    return CODEX


@pytest.fixture(autouse=True)
def _reset_upstreams(upstreams: dict[str, FakeProvider]) -> None:
    for server in upstreams.values():
        server.reset()


@pytest.fixture
def stack(tmp_path: Path, fakes: dict[str, FakeProvider], upstreams: dict[str, FakeProvider], oauth: FakeOAuth,
          make_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """A gateway whose OpenAI models are served by one Codex login (logged in against the fake OAuth server)."""
    config = login_config(fakes, upstreams, oauth, tmp_path / "accounts.json")
    login_by_browser(write_config(tmp_path, config), "codex")
    return make_stack(config)


def rate_limits(primary: float, secondary: float) -> bytes:
    doc = {"type": "codex.rate_limits", "plan_type": "plus", "rate_limits": {
        "allowed": True, "limit_reached": False,
        "primary": {"used_percent": primary, "window_minutes": 300, "reset_at": RESET},
        "secondary": {"used_percent": secondary, "window_minutes": 10080, "reset_at": RESET + 86400}},
        "credits": {"has_credits": False, "unlimited": False, "balance": "0"}}
    return b"event: codex.rate_limits\ndata: " + json.dumps(doc).encode() + b"\n\n"


def answer(primary: float, secondary: float, headers: bool = True) -> tuple[dict[str, str], bytes]:
    """The backend's stream: its rate-limit event first, then the answer; with `headers`, the same numbers in the
    x-codex-* headers too."""
    said = {"x-codex-primary-used-percent": str(primary), "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(RESET), "x-codex-secondary-used-percent": str(secondary),
            "x-codex-secondary-window-minutes": "10080", "x-codex-secondary-reset-at": str(RESET + 86400),
            "x-codex-credits-has-credits": "False", "x-codex-credits-unlimited": "False"} if headers else {}
    return {"content-type": "text/event-stream", **said}, rate_limits(primary, secondary) + \
        fakes_module.responses_stream(MODEL)


def held_to_the_rules(seen: Recorded, oauth: FakeOAuth) -> dict[str, Any]:
    """What ChatGPT's backend checks of every request (else 400 "Unsupported parameter" and the like); the Codex
    CLI's compact (lite) shape carries no `instructions`, any other has them."""
    assert seen.path == "/backend-api/codex/responses"
    assert oauth.is_valid_access_token(seen.headers["authorization"].removeprefix("Bearer "))
    assert seen.headers["chatgpt-account-id"] == "acct-fake-123"
    body = seen.json()
    assert not set(REFUSED) & set(body) and "previous_response_id" not in body, sorted(body)
    lite = seen.headers.get(LITE) == "true"
    assert ("instructions" not in body) if lite else isinstance(body["instructions"], str)
    assert body["store"] is False and body["stream"] is True
    return dict(body)


def windows_of(stack: Stack) -> dict[str, float]:
    detail = httpx.get(f"{stack.url}/v1/models/{MODEL}").json()
    (login,) = [c for c in detail["credential_states"] if c["id"].startswith("codex-")]
    return {w["name"]: w["used"] for w in login.get("windows", [])}


def test_codex_cli_runs_on_a_codex_login(codex: Path, stack: Stack, upstreams: dict[str, FakeProvider],
                                         oauth: FakeOAuth, tmp_path: Path) -> None:
    home, codex_home = tmp_path / "home", tmp_path / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(
        f'model = "{MODEL}"\nmodel_provider = "gateway"\n\n[model_providers.gateway]\nname = "extproc"\n'
        f'base_url = "{stack.url}/v1"\nenv_key = "EXTPROC_CLIENT_KEY"\nwire_api = "responses"\n')
    upstreams["chatgpt"].script(200, *answer(42, 17))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home),
           "EXTPROC_CLIENT_KEY": CLIENT_KEY, "NO_COLOR": "1"}
    done = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "--sandbox", "read-only", "say hi"],
                          env=env, cwd=home, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"hello from {MODEL}" in done.stdout
    seen = upstreams["chatgpt"].wait_for(1)[0]
    body = held_to_the_rules(seen, oauth)
    assert body["model"] == MODEL and seen.headers[LITE] == "true"
    assert seen.headers.get("originator", "").startswith("codex")  # the CLI's own, as it sent it
    assert "instructions" not in body  # the CLI's compact shape: its system prompt is in `input`, as it sent it
    assert CLIENT_KEY not in json.dumps(seen.headers)  # the client's key never reaches the backend
    # The login's windows, named by their minutes: live in the model's detail, and kept with the account.
    assert eventually(lambda: windows_of(stack) == {"5h": 0.42, "7d": 0.17} or None, "the windows are read")
    eventually(lambda: "5h 42% (resets " in cli(stack.config_path, "list").stdout, "the windows reach the account")
    no_token_in(done.stdout + done.stderr + stack.logs(), oauth)


def test_a_chat_client_on_a_codex_login_gets_whole_answers_and_its_sampling_never_reaches_the_backend(
        stack: Stack, upstreams: dict[str, FakeProvider], oauth: FakeOAuth) -> None:
    oa = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    # A whole answer asked for: the backend only streams, so the stream is collected (and its event read there).
    upstreams["chatgpt"].script(200, *answer(55, 30, headers=False))
    whole = oa.chat.completions.create(model=MODEL, temperature=0.2, top_p=0.5, max_tokens=64, user="u-1",
                                       messages=[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "hi"}])
    assert whole.choices[0].message.content == f"hello from {MODEL}"
    seen = upstreams["chatgpt"].wait_for(1)[0]
    body = held_to_the_rules(seen, oauth)
    assert body["instructions"] == "Be brief." and body["input"][0]["role"] == "user"
    assert "originator" not in seen.headers  # the gateway names no client it is not (the Codex CLI's identity)
    assert eventually(lambda: windows_of(stack) == {"5h": 0.55, "7d": 0.3} or None, "the collected stream's event")
    # A stream asked for: it passes the relay, which reads the event as the answer goes by.
    upstreams["chatgpt"].script(200, *answer(61, 33, headers=False))
    chunks = oa.chat.completions.create(model=MODEL, max_completion_tokens=64, stream=True,
                                        messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"hello from {MODEL}"
    held_to_the_rules(upstreams["chatgpt"].wait_for(2)[1], oauth)
    assert eventually(lambda: windows_of(stack) == {"5h": 0.61, "7d": 0.33} or None, "the relayed stream's event")
    # A conversation the backend cannot have stored: told in the client's envelope, and nothing goes upstream.
    with pytest.raises(openai.BadRequestError) as refused:
        oa.responses.create(model=MODEL, input="and then?", previous_response_id="resp_1")
    assert "previous_response_id" in refused.value.message and "`input`" in refused.value.message
    assert len(upstreams["chatgpt"].requests) == 2
    no_token_in(stack.logs(), oauth)
