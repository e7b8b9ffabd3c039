"""Azure OpenAI with Microsoft Entra ID tokens, through a real Envoy: azure-identity's own credential asks a fake
Microsoft identity platform (over TLS, trusted through the gateway's `ca_file`) for a token with the application's
client secret, and a fake Azure OpenAI takes only a token issued for its audience, as `Authorization: Bearer` —
never the resource's key, never the client's. The openai SDK is served whole and streamed; the token is reused,
then asked again ahead of its expiry without a request waiting; a refused client secret fails closed, in the
client's own envelope, saying why, with nothing sent to Azure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from azure.core.exceptions import ClientAuthenticationError

from extproc.auth.azure import azure_credential
from extproc.core.settings import EntraAuth
from tests.conftest import Stack
from tests.fake_entra import AUDIENCE, SCOPE, Application, FakeEntra, make_application
from tests.fakes import FakeAzure
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
DEPLOYMENTS = {"gpt-6-luna": "luna-prod"}


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeEntra]:
    server = FakeEntra(tmp_path_factory.mktemp("entra"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def application(entra: FakeEntra) -> Application:
    found = make_application()
    entra.register(found)
    return found


@pytest.fixture(scope="module")
def azure(entra: FakeEntra) -> Iterator[FakeAzure]:
    server = FakeAzure("azure", None, tuple(DEPLOYMENTS.values()), bearer=lambda t: entra.valid_for(AUDIENCE, t))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _reset_azure(azure: FakeAzure) -> None:
    azure.reset()


def entra_config(azure: FakeAzure, entra: FakeEntra, application: Application, **extra: Any) -> dict[str, Any]:
    provider = {"kind": "azure", "endpoint": azure.base_url, "auth": "entra", "tenant_id": application.tenant_id,
                "client_id": application.client_id, "client_secret": application.client_secret,
                "authority": entra.authority, "deployments": DEPLOYMENTS}
    return {"discovery": False, "strategy": "none", "ca_file": str(entra.ca_file), **extra,
            "providers": {"azure": provider}}


@pytest.fixture(scope="module")
def stack(azure: FakeAzure, entra: FakeEntra, application: Application,
          make_module_stack: Callable[[dict[str, Any]], Stack]) -> Stack:
    """A team whose Azure OpenAI resource takes Entra ID tokens only (local authentication disabled)."""
    return make_module_stack(entra_config(azure, entra, application))


def only_the_token(entra: FakeEntra, sent: dict[str, str]) -> bool:
    """A token issued for Azure OpenAI went as the bearer, and nothing else that could carry a credential."""
    bearer = sent.get("authorization", "")
    return bearer.startswith("Bearer ") and entra.valid_for(AUDIENCE, bearer[7:]) and "api-key" not in sent \
        and "x-api-key" not in sent


def test_the_fakes_refuse_what_microsoft_and_azure_refuse(entra: FakeEntra, application: Application,
                                                         azure: FakeAzure) -> None:
    async def token(secret: str, scope: str = SCOPE) -> str:
        credential = azure_credential(EntraAuth(scope, application.tenant_id, application.client_id, secret,
                                                authority=entra.authority), str(entra.ca_file))
        try:
            return (await credential.get_token_info(scope)).token
        finally:
            await credential.close()

    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        asyncio.run(token("not-the-secret"))
    graph = asyncio.run(token(application.client_secret, "https://graph.microsoft.com/.default"))
    for bearer in ("made-up", graph):  # a token nobody issued, and one for another resource
        refused = httpx.post(azure.base_url + "/openai/v1/chat/completions", json={"model": "luna-prod",
                             "messages": CHAT}, headers={"authorization": f"Bearer {bearer}"})
        assert refused.status_code == 401 and "audience" in refused.json()["error"]["message"]
    assert not azure.requests


def test_the_openai_sdk_is_served_with_an_entra_token_whole_and_streamed(stack: Stack, entra: FakeEntra,
                                                                         azure: FakeAzure) -> None:
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key="client-own-key", max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(model="gpt-6-luna", messages=CHAT)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "hello from luna-prod"
    assert raw.headers["x-extproc-provider"] == "azure"
    sent = azure.requests[-1]
    assert sent.path == "/openai/v1/chat/completions" and sent.json()["model"] == "luna-prod"
    assert only_the_token(entra, sent.headers)
    chunks = list(oa.chat.completions.create(model="gpt-6-luna", messages=CHAT, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from luna-prod"
    assert azure.requests[-1].json()["stream"] is True and only_the_token(entra, azure.requests[-1].headers)
    assert azure.requests[-1].headers["authorization"] == sent.headers["authorization"]  # reused, not asked again


def test_the_token_is_asked_again_ahead_of_its_expiry_while_requests_go_with_the_held_one(
        azure: FakeAzure, entra: FakeEntra, application: Application,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """Tokens good for 120 s, renewed 300 s ahead: azure-identity asks its endpoint again once 30 s have passed
    since it last did (sooner, it answers the token it holds); the request that finds the token due goes with it,
    and a later one with the new token, before the first expired."""
    entra.expires_in = 120
    try:
        stack = make_stack(entra_config(azure, entra, application, fast_path=False))
        url, body = stack.url + "/v1/chat/completions", {"model": "gpt-6-luna", "messages": CHAT}
        before = len(entra.tokens())
        assert httpx.post(url, json=body).status_code == 200
        first = entra.tokens()[before]  # fetched for it: nothing held yet
        assert azure.requests[-1].headers["authorization"] == f"Bearer {first}"
        issued_at = time.time()
        last_sent = [0.0]

        def renewed() -> str | None:
            if time.monotonic() - last_sent[0] >= 1.0:  # a request a second finds the token due once it is
                last_sent[0] = time.monotonic()
                assert httpx.post(url, json=body).status_code == 200
            return entra.tokens()[before + 1] if len(entra.tokens()) > before + 1 else None

        fresh = eventually(renewed, "the token is asked again ahead of its expiry", timeout=75)
        assert time.time() - issued_at < 120  # while the first one was still good
        assert httpx.post(url, json=body).status_code == 200
        assert azure.requests[-1].headers["authorization"] == f"Bearer {fresh}"
        assert all(r.headers["authorization"] in (f"Bearer {first}", f"Bearer {fresh}") for r in azure.requests)
    finally:
        entra.expires_in = 3599


def test_a_refused_client_secret_fails_closed_in_the_clients_envelope(
        azure: FakeAzure, entra: FakeEntra, application: Application, tmp_path: Path,
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    wrong = Application(application.tenant_id, application.client_id, "not-the-secret-of-this-application")
    refusals = entra.refusals
    stack = make_stack(entra_config(azure, entra, wrong))
    chat = httpx.post(stack.url + "/v1/chat/completions", json={"model": "gpt-6-luna", "messages": CHAT})
    assert chat.status_code == 503, chat.text
    error = chat.json()["error"]
    assert "Entra ID token" in error["message"] and "AADSTS7000215" in error["message"], error
    claude = anthropic.Anthropic(base_url=stack.url, api_key="client-own-key", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused:  # Claude Code on the Azure model: Anthropic's envelope
        claude.messages.create(model="gpt-6-luna", max_tokens=64, messages=CHAT)  # type: ignore[arg-type]
    assert refused.value.status_code == 503 and refused.value.body["type"] == "error"  # type: ignore[index]
    assert "Entra ID token" in json.dumps(refused.value.body)
    assert not azure.requests and entra.refusals > refusals
    assert wrong.client_secret not in stack.logs() and wrong.client_secret not in chat.text
