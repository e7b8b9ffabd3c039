"""`EntraTokens` with azure-identity's own credential against the fake Microsoft identity platform (in this process):
many requests at once with nothing held ask for one token; a held token is served without asking again; a refused
secret, an unknown tenant or an empty secret fail closed, saying why and never with the secret; every other
credential's secret comes from the source it wraps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from extproc.auth.azure import EntraTokens
from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import StaticSecrets
from extproc.core.settings import Credential, EntraAuth
from tests.clock import Clock
from tests.fake_entra import SCOPE, Application, FakeEntra, make_application


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


def credential(entra: FakeEntra, tenant: str, client: str, secret: str) -> Credential:
    return Credential(id="azure:entra", provider="azure",
                      entra=EntraAuth(SCOPE, tenant, client, secret, authority=entra.authority))


async def _with(tokens: EntraTokens, *calls: Credential) -> list[str | BaseException]:
    try:
        return await asyncio.gather(*(tokens.secret(c) for c in calls), return_exceptions=True)
    finally:
        await tokens.aclose()


def test_requests_at_once_ask_for_one_token_and_a_held_one_is_not_asked_again(
        entra: FakeEntra, application: Application) -> None:
    clock = Clock(time.time())
    tokens = EntraTokens(StaticSecrets(), str(entra.ca_file), clock=clock)
    cred = credential(entra, application.tenant_id, application.client_id, application.client_secret)
    before = len(entra.tokens())

    async def twice() -> tuple[list[str | BaseException], str]:
        first = await asyncio.gather(*(tokens.secret(cred) for _ in range(20)))
        clock.now += 600  # still far from expiry (tokens live an hour): served as held
        try:
            return list(first), await tokens.secret(cred)
        finally:
            await tokens.aclose()

    first, later = asyncio.run(twice())
    assert len(entra.tokens()) == before + 1 and set(first) == {entra.tokens()[before]} and later == first[0]


@pytest.mark.parametrize("case", ["secret", "tenant", "empty"])
def test_a_credential_that_gets_no_token_fails_closed_saying_why_without_its_secret(
        entra: FakeEntra, application: Application, case: str) -> None:
    secret = {"secret": "wrong-secret-of-this-application", "tenant": application.client_secret, "empty": ""}[case]
    tenant = "00000000-0000-0000-0000-000000000000" if case == "tenant" else application.tenant_id
    refusals = entra.refusals
    cred = credential(entra, tenant, application.client_id, secret)
    (failed,) = asyncio.run(_with(EntraTokens(StaticSecrets(), str(entra.ca_file)), cred))
    assert isinstance(failed, CredentialUnavailable) and not failed.permanent
    expected = {"secret": "AADSTS7000215", "tenant": "AADSTS90002", "empty": "client_secret is empty"}[case]
    assert str(failed).startswith("no Entra ID token for azure:entra: ") and expected in str(failed)
    assert application.client_secret not in str(failed) and (not secret or secret not in str(failed))
    assert entra.refusals == refusals + (case != "empty")  # an empty secret is never sent


def test_other_credentials_come_from_the_source_it_wraps(entra: FakeEntra) -> None:
    key = Credential(id="openai:key1", provider="openai", secret="sk-plain-key-value")
    assert asyncio.run(_with(EntraTokens(StaticSecrets(), str(entra.ca_file)), key)) == ["sk-plain-key-value"]
    with pytest.raises(CredentialUnavailable, match="no Entra ID token source"):  # never the empty key instead
        asyncio.run(StaticSecrets().secret(Credential(id="a:entra", provider="a", entra=EntraAuth(SCOPE))))
