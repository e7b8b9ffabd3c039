"""`providers.X.kind: azure`: a few keys become a provider of Azure OpenAI, and every mistake is named at once."""

from __future__ import annotations

import datetime as dt

import pytest

from extproc.config import parse_settings
from extproc.config.problems import ConfigErrors
from extproc.core.providers import Api, AuthStyle

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
                     "providers.azure.auth: kind azure sends the resource's key", "Entra ID tokens are not supported",
                     "providers.azure.deployments.gpt-6-luna: 'x' is not a deployment name",
                     "providers.azure.api_version: 'latest' is not an Azure OpenAI api-version",
                     "providers.nokind.endpoint: only a provider with a kind takes it; add kind: azure",
                     "providers.typo.kind: 'azur' is not one of azure",
                     "providers.openai.kind: openai is a built-in provider",
                     "providers.bare.base_url: kind azure takes the resource's endpoint instead",
                     "providers.bare.endpoint: kind azure needs its resource's endpoint"):
        assert fragment in found
