"""Copilot's pure parts: its model list (each model's endpoints), resolution to a listed endpoint only, the
X-Initiator reading of each API's body, GitHub's refusals that are for good, the plan's quotas as windows, an
editor's login file."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from extproc.auth.copilot import quota_windows, refused
from extproc.auth.imports import LoginFileError, parse_login_file
from extproc.core.health import Health
from extproc.core.providers import Api, AuthStyle
from extproc.core.resolve import resolve
from extproc.core.settings import Credential
from extproc.core.view import RequestView
from extproc.discovery.parse import parse_model_list
from extproc.request.transforms import translates
from extproc.request.transforms.copilot import read_turn
from extproc.runtime import Snapshot
from tests.fake_copilot import CLAUDE, CODEX, DISABLED, EMBED, MODELS, QUOTA
from tests.unit.helpers import settings

LOGIN = Credential(id="copilot-1", provider="copilot", upstream="copilot", account="copilot-1", auth=AuthStyle.BEARER)


def snapshot() -> Snapshot:
    listed, _ = parse_model_list("copilot", json.dumps({"data": MODELS}).encode())
    return Snapshot.build(settings(), (LOGIN,), {"copilot": tuple(listed)})


def test_the_list_gives_each_model_its_endpoints_limits_and_capabilities() -> None:
    models = {m.id: m for m in snapshot().registry.models if m.provider == "copilot"}
    assert set(models) == {CLAUDE, CODEX, EMBED}  # the policy-disabled one is left out
    claude, codex, embed = models[CLAUDE], models[CODEX], models[EMBED]
    assert claude.endpoints == frozenset({"chat", "messages"}) and codex.endpoints == frozenset({"responses"})
    assert embed.mode == "embedding" and embed.endpoints is None  # it names none: whatever the provider serves
    assert (claude.context_window, claude.max_output_tokens) == (200000, 32000)
    assert claude.capabilities == frozenset({"tools", "vision", "streaming", "reasoning"})
    assert codex.capabilities == frozenset({"tools", "streaming", "structured_output", "reasoning"})
    assert DISABLED not in models


@pytest.mark.parametrize(("model", "api", "endpoint", "goes"), [
    (CLAUDE, Api.OPENAI, "chat", None),  # listed: as it is
    (CLAUDE, Api.ANTHROPIC, "messages", None),  # Anthropic's API natively
    (CLAUDE, Api.OPENAI, "responses", (Api.OPENAI, "chat")),  # not listed: translated to one that is
    (CODEX, Api.OPENAI, "responses", None),
    (CODEX, Api.OPENAI, "chat", (Api.OPENAI, "responses")),
    (CODEX, Api.ANTHROPIC, "messages", (Api.OPENAI, "responses")),
])
def test_a_request_goes_only_to_an_endpoint_its_model_is_listed_on(
        model: str, api: Api, endpoint: str, goes: tuple[Api, str] | None) -> None:
    current = snapshot()
    decision = resolve(RequestView(api, model, endpoint=endpoint), current.registry,
                       Health(current.settings.health), 0.0)
    assert decision.provider.name == "copilot" and decision.credential.id == "copilot-1"
    assert translates(decision) == goes


@pytest.mark.parametrize(("api", "doc", "agent", "vision"), [
    (Api.OPENAI, {"messages": [{"role": "user", "content": "hi"}]}, False, False),
    (Api.OPENAI, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": []},
                               {"role": "tool", "tool_call_id": "c", "content": "42"}]}, True, False),
    (Api.OPENAI, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, False, True),
    (Api.OPENAI, {"input": "hi"}, False, False),
    (Api.OPENAI, {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, False, True),
    (Api.OPENAI, {"input": [{"role": "user", "content": "hi"}, {"type": "function_call", "call_id": "c"},
                            {"type": "function_call_output", "call_id": "c", "output": "42"}]}, True, False),
    (Api.ANTHROPIC, {"messages": [{"role": "user", "content": "hi"}]}, False, False),
    (Api.ANTHROPIC, {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}]}]}, True, True),
    (Api.ANTHROPIC, {"messages": [{"role": "user", "content": [  # a tool's result with a word besides
        {"type": "tool_result", "tool_use_id": "t", "content": "42"}, {"type": "text", "text": "and?"}]}]},
     True, False),
    # Anything but a tool's answer last is the user's turn: an assistant's prefill, a system message.
    (Api.OPENAI, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}]},
     False, False),
    (Api.OPENAI, {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "be brief"}]},
     False, False),
    (Api.OPENAI, {"input": [{"role": "user", "content": "hi"}, {"role": "developer", "content": "be brief"}]},
     False, False),
    (Api.OPENAI, {"input": [{"role": "user", "content": "hi"}, {"type": "message", "role": "assistant",
                                                                "content": "Well,"}]}, False, False),
    (Api.ANTHROPIC, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}]},
     False, False),
])
def test_the_initiator_and_images_are_read_from_each_apis_body(api: Api, doc: dict[str, Any], agent: bool,
                                                              vision: bool) -> None:
    assert read_turn(api, doc) == (agent, vision)


@pytest.mark.parametrize(("status", "headers", "for_good"), [
    (401, {}, True),
    (403, {}, True),  # no Copilot on the account
    (403, {"x-ratelimit-remaining": "0"}, False),  # GitHub's rate limit
    (403, {"retry-after": "30"}, False),  # its secondary rate limit
    (403, {"x-ratelimit-remaining": "4999"}, True),
    (429, {}, False),
    (500, {}, False),
])
def test_github_refuses_a_token_for_good_only_when_it_is_no_rate_limit(status: int, headers: dict[str, str],
                                                                        for_good: bool) -> None:
    assert refused(httpx.Response(status, headers=headers)) is for_good


def test_limited_quotas_become_windows_and_unlimited_ones_are_left_out() -> None:
    state = quota_windows(QUOTA)
    assert state is not None and not state.exhausted
    (premium,) = state.levels
    midnight = dt.datetime(2031, 5, 1, tzinfo=dt.UTC).timestamp()  # quota_reset_date, at midnight UTC
    assert (premium.name, premium.utilization, premium.resets_at) == ("premium_interactions", 0.75, midnight)
    free = {**QUOTA, "quota_snapshots": {"chat": {"percent_remaining": 0, "unlimited": False},
                                         "premium_interactions": {"percent_remaining": 100, "unlimited": False}}}
    spent = quota_windows(free)
    assert spent is not None and spent.exhausted and spent.utilization == 1.0  # the free plan's chat ran out
    assert quota_windows({"quota_snapshots": {"chat": {"unlimited": True}}}) is None


def test_an_editors_login_file_is_read_and_a_wrong_one_named() -> None:
    apps = {"github.com:Iv1.b507a08c87ecfe98": {"user": "octocat", "oauth_token": "ghu_fake0123456789"}}
    account = parse_login_file("copilot", json.dumps(apps).encode(), "apps.json")
    assert account.kind == "copilot" and account.refresh_token == "ghu_fake0123456789"
    assert account.access_token is None  # exchanged before its first use
    older = parse_login_file("copilot", json.dumps({"github.com": {"oauth_token": "ghu_x"}}).encode(), "hosts.json")
    assert older.refresh_token == "ghu_x"
    with pytest.raises(LoginFileError, match="hosts.json has no github.com login"):
        parse_login_file("copilot", b'{"ghe.example.com": {"oauth_token": "x"}}', "hosts.json")
