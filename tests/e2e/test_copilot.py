"""GitHub Copilot logins end to end: the openai and anthropic SDKs through Envoy to a fake Copilot, each request
on an endpoint its model is listed on (Claude models in Anthropic's API natively), X-Initiator read from the
request (unless the client says it), the plan's quota as windows read by one worker, and an editor's login
imported and exchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from extproc.auth.store import Account, TokenStore
from extproc.state.token_store import RedisTokenStore
from tests.conftest import STATE_KEY, RedisServer, Stack
from tests.fake_copilot import CLAUDE, CODEX, DISABLED, EMBED, FakeCopilot
from tests.fake_oauth import FakeOAuth
from tests.waits import HANG_GUARD, eventually

pytestmark = pytest.mark.usefixtures("fresh_copilot")  # each test starts with an empty fake Copilot

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


def copilot_config(copilot: FakeCopilot, store: Path) -> dict[str, Any]:
    """Copilot and GitHub both at the fake; every other provider without a key."""
    return {"providers": {"copilot": {"base_url": copilot.base_url}},
            "auth": {"store": str(store)},
            "oauth": {"copilot": {"exchange_url": f"{copilot.base_url}/copilot_internal/v2/token",
                                  "quota_url": f"{copilot.base_url}/copilot_internal/user"}}}


def seed(store: Path, **fields: Any) -> Account:
    now = time.time()
    return TokenStore(store).upsert(Account(id="copilot-test01", kind="copilot", created_at=now, updated_at=now,
                                            **fields))


def listed(stack: Stack, model: str) -> dict[str, Any]:
    """The model's card once discovery has read Copilot's list (the login's first model list). Before that, a name
    a provider's model prefixes claim (claude-) has a card too, its owner's (a request would pass through to it):
    only Copilot's own card says the list is read."""
    def card() -> dict[str, Any] | None:
        answer = httpx.get(f"{stack.url}/v1/models/{model}")
        found = answer.json() if answer.status_code == 200 else None
        return found if found is not None and found["provider"] == "copilot" else None
    return eventually(card, f"{model} is listed by Copilot")


@pytest.fixture(scope="module")
def device_stack(copilot: FakeCopilot, tmp_path_factory: pytest.TempPathFactory,
                 make_module_stack: Callable[[dict[str, Any]], Stack]) -> tuple[Stack, str, Path]:
    """A gateway with a Copilot login as the device flow leaves it: a GitHub token, no refresh token, no expiry."""
    store = tmp_path_factory.mktemp("copilot") / "accounts.json"
    token = copilot.github_token()
    seed(store, access_token=token)
    stack = make_module_stack(copilot_config(copilot, store))
    listed(stack, CLAUDE)
    return stack, token, store


def test_the_model_list_is_the_logins_own_with_each_models_limits(
        copilot: FakeCopilot, device_stack: tuple[Stack, str, Path]) -> None:
    stack, token, _ = device_stack
    assert copilot.list_requests[-1].headers["authorization"] == f"Bearer {token}"
    card = listed(stack, CLAUDE)
    assert card["provider"] == "copilot" and card["discovered"] is True and card["available"] is True
    assert card["context_window"] == 200000 and card["max_output_tokens"] == 32000
    assert set(card["capabilities"]) == {"tools", "vision", "streaming", "reasoning"}
    ids = {m["id"] for m in httpx.get(f"{stack.url}/v1/models").json()["data"]}
    assert {CLAUDE, CODEX, EMBED} <= ids and DISABLED not in ids  # a model its policy disables is no use


def test_openai_sdk_chat_for_a_claude_model_goes_to_chat_completions(
        copilot: FakeCopilot, device_stack: tuple[Stack, str, Path]) -> None:
    stack, token, _ = device_stack
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    answer = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == f"hello from {CLAUDE}"
    (seen,) = copilot.wait_for(1)
    assert seen.path == "/chat/completions" and seen.json()["model"] == CLAUDE
    assert seen.headers["authorization"] == f"Bearer {token}"
    assert seen.headers["x-initiator"] == "user" and seen.headers["openai-intent"] == "conversation-edits"
    assert "copilot-vision-request" not in seen.headers


def test_a_turn_that_answers_a_tool_call_is_the_agents(copilot: FakeCopilot,
                                                      device_stack: tuple[Stack, str, Path]) -> None:
    stack, _, _ = device_stack
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    client.chat.completions.create(model=CLAUDE, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}])
    (seen,) = copilot.wait_for(1)
    assert seen.headers["x-initiator"] == "agent" and seen.headers["copilot-vision-request"] == "true"


def test_the_clients_own_initiator_passes_as_it_is(copilot: FakeCopilot,
                                                   device_stack: tuple[Stack, str, Path]) -> None:
    """A client that says who started the turn (Copilot's own do) is taken at its word, whatever the body says."""
    stack, _, _ = device_stack
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    client.chat.completions.create(model=CLAUDE, extra_headers={"X-Initiator": "user"}, messages=[
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": "call_1", "content": "42"}])
    client.chat.completions.create(model=CLAUDE, messages=[
        {"role": "user", "content": "write a haiku"}, {"role": "assistant", "content": "Autumn"}])  # a prefill
    told, prefill = copilot.wait_for(2)
    assert (told.headers["x-initiator"], prefill.headers["x-initiator"]) == ("user", "user")


def test_anthropic_sdk_reaches_a_claude_model_natively(copilot: FakeCopilot,
                                                       device_stack: tuple[Stack, str, Path]) -> None:
    stack, token, _ = device_stack
    client = anthropic.Anthropic(base_url=stack.url, api_key="client-key", max_retries=0)
    first = client.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert first.content[0].text == f"hello from {CLAUDE}"  # type: ignore[union-attr]
    tool_turn = [{"role": "user", "content": "look it up"},
                 {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "42"}]}]
    with client.messages.stream(model=CLAUDE, max_tokens=50, messages=tool_turn) as stream:  # type: ignore[arg-type]
        assert stream.get_final_text() == f"hello from {CLAUDE}"
    user, agent = copilot.wait_for(2)
    assert user.path == agent.path == "/v1/messages" and "max_tokens" in agent.json()  # Anthropic's own shape
    assert agent.headers["authorization"] == f"Bearer {token}" and "x-api-key" not in agent.headers
    assert (user.headers["x-initiator"], agent.headers["x-initiator"]) == ("user", "agent")


def test_responses_only_model_takes_responses_and_chat_translated(
        copilot: FakeCopilot, device_stack: tuple[Stack, str, Path]) -> None:
    stack, _, _ = device_stack
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    answer = client.responses.create(model=CODEX, input="hi")
    assert answer.output_text == f"hello from {CODEX}"
    chat = client.chat.completions.create(model=CODEX, messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == f"hello from {CODEX}"
    native, translated = copilot.wait_for(2)
    assert native.path == translated.path == "/responses"  # the one endpoint its list names
    assert native.json()["input"] == "hi" and translated.json()["model"] == CODEX
    assert native.headers["x-initiator"] == "user" and translated.headers["x-initiator"] == "user"


def test_quota_shows_as_windows(copilot: FakeCopilot, device_stack: tuple[Stack, str, Path]) -> None:
    stack, token, store = device_stack
    def windows() -> list[dict[str, Any]]:
        card = httpx.get(f"{stack.url}/v1/models/{CLAUDE}").json()
        found: list[dict[str, Any]] = card["credential_states"][0].get("windows", [])
        return found
    (premium,) = eventually(windows, "the login's quota shows on the model's card")  # unlimited ones are left out
    assert premium["name"] == "premium_interactions" and premium["used"] == 0.75
    assert premium["resets_at"].startswith("2031-05-01T00:00:00")
    quota_call = next(r for r in copilot.github_requests if r.path == "/copilot_internal/user")
    assert quota_call.headers["authorization"] == f"token {token}"
    metrics = eventually(lambda: "extproc_subscription_window_used_ratio{" in (text := httpx.get(
        stack.metrics_url).text) and text, "the window's metric")
    assert 'extproc_subscription_window_used_ratio{credential="copilot-test01",window="premium_interactions"} 0.75' \
        in metrics
    assert 'extproc_subscription_window_resets_at_seconds{credential="copilot-test01",window="premium_interactions"} ' \
        '1.93536e+09' in metrics  # 2031-05-01T00:00:00Z
    listing = auth_cli(store, copilot, "list")
    assert "premium_interactions 75%" in listing.stdout, listing.stdout


def test_a_name_is_copilots_once_the_logins_list_is_read(
        tmp_path: Path, copilot: FakeCopilot, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Until the login's first model list is in, a Claude name is its prefix owner's, Anthropic's (without a key
    here): a card answers for it all the same, so the card's provider, not its status, says the list is read."""
    store = tmp_path / "accounts.json"
    token = copilot.github_token()
    seed(store, access_token=token)
    copilot.lists_open.clear()  # the list is asked for, and answered only below
    stack = make_stack({**copilot_config(copilot, store), "discovery": {"timeout": HANG_GUARD}})
    eventually(lambda: any(r.headers["authorization"] == f"Bearer {token}" for r in copilot.list_requests),
               "discovery asks Copilot for the login's list")
    before = httpx.get(f"{stack.url}/v1/models/{CLAUDE}").json()
    assert (before["provider"], before["discovered"], before["available"]) == ("anthropic", False, False)
    copilot.lists_open.set()
    card = listed(stack, CLAUDE)
    assert card["discovered"] is True and card["available"] is True
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    answer = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == f"hello from {CLAUDE}"


def auth_cli(store: Path, copilot: FakeCopilot, *args: str) -> subprocess.CompletedProcess[str]:
    config = store.parent / "cli.yaml"
    config.write_text(yaml.safe_dump(copilot_config(copilot, store)))
    return subprocess.run([sys.executable, "-m", "extproc", "auth", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ))


def test_an_editors_login_is_imported_and_its_token_exchanged(
        tmp_path: Path, copilot: FakeCopilot, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    store = tmp_path / "accounts.json"
    editor = copilot.github_token(editor=True)
    apps = tmp_path / "apps.json"
    apps.write_text(json.dumps({"github.com:Iv1.b507a08c87ecfe98": {
        "user": "octocat", "oauth_token": editor, "githubAppId": "Iv1.b507a08c87ecfe98"}}))
    imported = auth_cli(store, copilot, "import", f"copilot={apps}")
    assert imported.returncode == 0 and "imported: copilot-" in imported.stdout, imported.stderr
    assert editor not in imported.stdout + imported.stderr
    stack = make_stack(copilot_config(copilot, store))
    listed(stack, CLAUDE)
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    (seen,) = copilot.wait_for(1)
    bearer = seen.headers["authorization"].removeprefix("Bearer ")
    assert bearer != editor and copilot.exchanged_for(bearer) == editor  # the editor's token never reaches Copilot
    (account,) = TokenStore(store).load()
    assert account.refresh_token == editor and account.expires_at is not None


def test_a_copilot_login_by_device_code_serves_the_openai_sdk(
        tmp_path: Path, copilot: FakeCopilot, oauth: FakeOAuth, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """`extproc auth login copilot` as on a server without a browser: the page and code are printed, the user
    approves on GitHub, and the GitHub token the poll brings is the login."""
    store = tmp_path / "accounts.json"
    config = copilot_config(copilot, store)
    config["oauth"]["copilot"]["device"] = {"style": "rfc8628", "code_url": f"{oauth.base_url}/login/device/code",
                                            "poll_url": f"{oauth.base_url}/login/oauth/access_token",
                                            "verify_url": oauth.device_page}
    config["oauth"]["copilot"]["userinfo_url"] = f"{oauth.base_url}/user"  # GitHub's /user: who logged in
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    interval, oauth.device_interval = oauth.device_interval, 0.05
    try:
        proc = subprocess.Popen([sys.executable, "-m", "extproc", "auth", "login", "copilot", "--config", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        assert proc.stdout is not None
        code = next(line.split("enter the code: ", 1)[1].strip() for line in proc.stdout
                    if "enter the code: " in line)
        oauth.approve_device(code)
        out, err = proc.communicate(timeout=30)
    finally:
        oauth.device_interval = interval
    assert proc.returncode == 0, err
    assert "logged in: copilot-" in out
    (account,) = json.loads(store.read_text())["accounts"]
    token = account["access_token"]
    valid, shown = oauth.is_valid_access_token(token), token in out + err  # never the token itself in a message
    assert account["kind"] == "copilot" and valid and not shown
    assert account["email"] == oauth.github_login  # GitHub's login name, its email being private
    copilot.github_tokens.add(token)  # GitHub's token, as Copilot's API takes it
    stack = make_stack(config)
    listed(stack, CLAUDE)
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="client-key", max_retries=0)
    answer = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == f"hello from {CLAUDE}"
    assert copilot.wait_for(1)[-1].headers["authorization"] == f"Bearer {token}"


def test_one_worker_reads_the_quota(copilot: FakeCopilot, redis_server: RedisServer,
                                    make_stack: Callable[[dict[str, Any]], Stack], tmp_path: Path) -> None:
    """Two workers, each listing Copilot's models with the login: the quota is read by the first only."""
    prefix = f"quota{time.monotonic_ns()}:"
    token = copilot.github_token()
    now = time.time()
    RedisTokenStore(redis_server.url, prefix, STATE_KEY).upsert(
        Account(id="copilot-workers", kind="copilot", created_at=now, updated_at=now, access_token=token))
    config = {**copilot_config(copilot, tmp_path / "unused.json"), "processor": {"workers": 2},
              "state": {"redis": {"url": redis_server.url, "prefix": prefix, "key": STATE_KEY}}}
    stack = make_stack(config)

    def listed_by_both() -> bool:  # each worker's discovery starts with its quota reader, when it has one
        return sum(r.headers.get("authorization") == f"Bearer {token}" for r in copilot.list_requests) >= 2
    eventually(listed_by_both, "both workers list Copilot's models with the login")
    eventually(lambda: listed(stack, CLAUDE)["credential_states"][0].get("windows"), "the quota shows")
    reads = sum(r.path == "/copilot_internal/user" and r.headers["authorization"] == f"token {token}"
                for r in copilot.github_requests)
    assert reads == 1
