"""`providers.X.kind: azure`: a few keys become a provider of Azure OpenAI, and every mistake is named at once."""

from __future__ import annotations

import datetime as dt

import pytest

from extproc.config import parse_settings
from extproc.config.problems import ConfigErrors
from extproc.core.providers import Api, AuthStyle
from extproc.core.settings import EntraAuth

ENDPOINT = "https://myres.openai.azure.com"


def azure(**section: object) -> dict[str, object]:
    return {"providers": {"azure": {"kind": "azure", "endpoint": ENDPOINT, "api_key": "k-azure", **section}}}


def test_the_v1_api_with_the_key_in_api_key_and_the_deployments_as_models() -> None:
    s = parse_settings(azure(deployments={"gpt-6-luna": "luna-prod", "my-own-model": "mine"}), {})
    spec = s.providers["azure"]
    assert (spec.base_url, spec.auth, spec.api_version) == (ENDPOINT, AuthStyle.API_KEY, None)
    assert spec.upstream_path(Api.OPENAI, "/chat/completions", "gpt-6-luna") == "/openai/v1/chat/completions"
    assert spec.body_model(Api.OPENAI, "gpt-6-luna") == "luna-prod"
    assert spec.auth_headers(Api.OPENAI, "k") == {"api-key": "k"}
    assert spec.discovery is not None and not spec.discovery.enabled  # its list is base models, not deployments
    served = {m.id: m for m in s.models if m.provider == "azure"}
    openai_luna = next(m for m in s.models if m.qualified == "openai/gpt-6-luna")
    assert served["gpt-6-luna"].input_price == openai_luna.input_price  # the catalog's facts of the same id
    assert served["gpt-6-luna"].capabilities == openai_luna.capabilities
    assert "my-own-model" in served


@pytest.mark.parametrize("version", ["2024-10-21", dt.date(2024, 10, 21)])  # unquoted in YAML, it is a date
def test_api_version_sends_chat_and_embeddings_to_the_deployment_paths(version: object) -> None:
    spec = parse_settings(azure(deployments={"gpt-6-luna": "luna"}, api_version=version), {}).providers["azure"]
    assert spec.upstream_path(Api.OPENAI, "/chat/completions", "gpt-6-luna") == \
        "/openai/deployments/luna/chat/completions?api-version=2024-10-21"
    assert spec.body_model(Api.OPENAI, "gpt-6-luna") == "gpt-6-luna"  # the path names the deployment
    assert spec.speaks(Api.OPENAI, "embeddings") and not spec.speaks(Api.OPENAI, "responses")


def test_every_mistake_is_named_with_its_fix_at_once() -> None:
    raw = {"providers": {
        "azure": {"kind": "azure", "endpoint": ENDPOINT + "/openai/v1", "auth": "entra", "api_key": "k",
                  "deployments": {"gpt-6-luna": "x"}, "api_version": "latest"},
        "nokind": {"endpoint": ENDPOINT},
        "typo": {"kind": "azur"},
        "openai": {"kind": "azure"},
        "bare": {"kind": "azure", "base_url": ENDPOINT},
    }}
    with pytest.raises(ConfigErrors) as info:
        parse_settings(raw, {})
    found = "\n".join(info.value.messages)
    for fragment in ("providers.azure.endpoint: the endpoint is the resource's address alone; drop /openai/v1",
                     "providers.azure.api_key: auth: entra sends an Entra ID token instead of the resource's key",
                     "providers.azure.deployments.gpt-6-luna: 'x' is not a deployment name",
                     "providers.azure.api_version: 'latest' is not an Azure OpenAI api-version",
                     "providers.nokind.endpoint: only a provider with a kind takes it; add kind: azure",
                     "providers.typo.kind: 'azur' is not one of azure",
                     "providers.openai.kind: openai is a built-in provider",
                     "providers.bare.base_url: kind azure takes the resource's endpoint instead",
                     "providers.bare.endpoint: kind azure needs its resource's endpoint"):
        assert fragment in found


SCOPE = "https://cognitiveservices.azure.com/.default"
TENANT, CLIENT = "72f988bf-86f1-41af-91ab-2d7cd011db47", "0f6e2a55-8a5b-4b5e-9c1e-1d2f3a4b5c6d"


def entra(**section: object) -> dict[str, object]:
    return {"providers": {"azure": {"kind": "azure", "endpoint": ENDPOINT, "auth": "entra",
                                    "deployments": {"gpt-6-luna": "luna"}, **section}}}


def test_entra_with_a_client_secret_is_one_bearer_credential_whose_secret_no_repr_shows() -> None:
    s = parse_settings(entra(tenant_id=TENANT, client_id=CLIENT, client_secret="s3cr3t-value"), {})
    (credential,) = [c for c in s.credentials if c.provider == "azure"]
    assert (credential.id, credential.secret, credential.auth) == ("azure:entra", "", AuthStyle.BEARER)
    assert credential.entra == EntraAuth(SCOPE, TENANT, CLIENT, "s3cr3t-value")
    assert "s3cr3t-value" not in repr(credential) and "s3cr3t-value" not in repr(s)
    assert s.providers["azure"].auth_headers(Api.OPENAI, "t") == {"authorization": "Bearer t"}


def test_entra_without_a_secret_is_azure_identitys_default_chain_and_its_scope_and_cloud_can_change() -> None:
    s = parse_settings(entra(), {})
    assert next(c for c in s.credentials if c.provider == "azure").entra == EntraAuth(SCOPE)
    s = parse_settings(entra(client_id=CLIENT, authority="login.microsoftonline.us",
                             scope="https://cognitiveservices.azure.us/.default"), {})
    assert next(c for c in s.credentials if c.provider == "azure").entra == EntraAuth(
        "https://cognitiveservices.azure.us/.default", client_id=CLIENT, authority="https://login.microsoftonline.us")


def test_a_client_secret_from_an_unset_variable_is_no_error_for_commands_that_serve_nothing() -> None:
    raw = entra(tenant_id=TENANT, client_id=CLIENT, client_secret="${AZURE_SECRET_UNSET}")
    assert parse_settings(raw, {}, secrets=False).providers["azure"].auth == AuthStyle.BEARER
    with pytest.raises(ConfigErrors, match="providers.azure.client_secret: environment variable AZURE_SECRET_UNSET"):
        parse_settings(raw, {})


def test_every_entra_mistake_is_named_with_its_fix_at_once() -> None:
    raw = {"providers": {
        "both": {"kind": "azure", "endpoint": ENDPOINT, "auth": "entra", "api_key": "k", "tenant_id": "a b",
                 "client_secret": "x", "client_certificate": "/no/such.pem", "authority": "http://login.example",
                 "scope": "https://cognitiveservices.azure.com"},
        "alone": {"kind": "azure", "endpoint": ENDPOINT, "auth": "entra", "tenant_id": TENANT},
        "keyed": {"kind": "azure", "endpoint": ENDPOINT, "api_key": "k", "client_id": CLIENT},
        "odd": {"kind": "azure", "endpoint": ENDPOINT, "auth": "oauth"},
    }}
    with pytest.raises(ConfigErrors) as info:
        parse_settings(raw, {})
    found = "\n".join(info.value.messages)
    for fragment in ("providers.both.api_key: auth: entra sends an Entra ID token instead of the resource's key",
                     "providers.both.tenant_id: 'a b' is not a tenant's directory id or domain",
                     "providers.both.client_secret: an application signs in with a client secret or a certificate",
                     "providers.both.client_certificate: '/no/such.pem' is not a readable file",
                     "providers.both.client_id: an application signing in with its client_secret needs it",
                     "providers.both.authority: 'http://login.example' is not a sign-in host",
                     "providers.both.scope: 'https://cognitiveservices.azure.com' is not a resource's scope",
                     "providers.alone.tenant_id: goes with client_secret or client_certificate",
                     "providers.keyed.client_id: only Microsoft Entra ID authentication takes it; add auth: entra",
                     "providers.odd.auth: 'oauth' is not one of api-key"):
        assert fragment in found
    assert "'x'" not in found  # a secret's value is never echoed
