"""`providers.X.kind: vertex`: a project and a location become a provider of Google's Gemini models on Vertex AI,
with one Google credential whose secret is never a key; every mistake is named at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from extproc.config import parse_settings
from extproc.config.problems import ConfigErrors
from extproc.core.errors import CredentialUnavailable
from extproc.core.health import Health
from extproc.core.providers import Api, AuthStyle
from extproc.core.secrets import StaticSecrets
from extproc.core.settings import GoogleAuth
from extproc.fast.routes import fast_route
from extproc.runtime import Snapshot


def vertex(**section: object) -> dict[str, object]:
    return {"discovery": False, "strategy": "none",
            "providers": {"vx": {"kind": "vertex", "project": "acme-prod", "location": "us-central1", **section}}}


def test_a_regional_provider_serves_the_catalogs_gemini_models_on_their_vertex_paths() -> None:
    s = parse_settings(vertex(), {})
    spec = s.providers["vx"]
    assert (spec.base_url, spec.apis[Api.GEMINI].auth) == ("https://us-central1-aiplatform.googleapis.com",
                                                           AuthStyle.BEARER)
    prefix = "/v1/projects/acme-prod/locations/us-central1/publishers/google/models/gemini-4-neon"
    rest = "/v1beta/models/gemini-4-neon"
    assert spec.upstream_path(Api.GEMINI, rest + ":generateContent", "gemini-4-neon") == prefix + ":generateContent"
    assert spec.upstream_path(Api.GEMINI, rest + ":streamGenerateContent?alt=sse", "gemini-4-neon") == \
        prefix + ":streamGenerateContent?alt=sse"
    assert spec.auth_headers(Api.GEMINI, "ya29.t") == {"authorization": "Bearer ya29.t"}
    assert not spec.speaks(Api.OPENAI, "chat")  # an OpenAI client is translated to Gemini's API
    served = {m.id: m for m in s.models if m.provider == "vx"}
    gemini = next(m for m in s.models if m.qualified == "gemini/gemini-4-neon")
    assert served["gemini-4-neon"].input_price == gemini.input_price  # the catalog's facts of the same id
    assert "gemini-embedding-001" not in served  # Vertex embeds through :predict, which is not served
    (credential,) = [c for c in s.credentials if c.provider == "vx"]
    assert (credential.id, credential.secret, credential.google) == ("vx:google", "", GoogleAuth(None))


def test_the_global_location_its_own_models_an_endpoint_and_a_key_file(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text("{}")
    s = parse_settings(vertex(location="global", models=["gemini-3.8-flash"], credentials_file=str(key)), {})
    spec = s.providers["vx"]
    assert spec.base_url == "https://aiplatform.googleapis.com"
    assert spec.upstream_path(Api.GEMINI, "/v1beta/models/gemini-3.8-flash:countTokens", "gemini-3.8-flash") == \
        "/v1/projects/acme-prod/locations/global/publishers/google/models/gemini-3.8-flash:countTokens"
    assert [m.id for m in s.models if m.provider == "vx"] == ["gemini-3.8-flash"]
    assert next(c for c in s.credentials if c.provider == "vx").google == GoogleAuth(str(key))
    moved = parse_settings(vertex(endpoint="http://127.0.0.1:9"), {}).providers["vx"]
    assert moved.base_url == "http://127.0.0.1:9"


def test_every_mistake_is_named_with_its_fix_at_once(tmp_path: Path) -> None:
    raw = {"providers": {
        "vx": {"kind": "vertex", "project": "Acme Prod", "location": "", "api_key": "k-vertex",
               "credentials_file": str(tmp_path / "missing.json"), "deployments": {"a": "b"}},
        "bare": {"kind": "vertex", "base_url": "https://x.example", "endpoint": "https://x.example/v1"},
        "nokind": {"project": "acme-prod"},
    }}
    with pytest.raises(ConfigErrors) as info:
        parse_settings(raw, {})
    found = "\n".join(info.value.messages)
    for fragment in ("providers.vx.project: 'Acme Prod' is not a Google Cloud project id",
                     "providers.vx.location: '' is not a Vertex AI location",
                     "providers.vx.api_key: not a key of kind vertex; it authenticates with Google credentials",
                     "providers.vx.credentials_file: ", "is not a readable file",
                     "providers.vx.deployments: not a key of kind vertex",
                     "providers.bare.base_url: not a key of kind vertex", "providers.bare.project: kind vertex needs",
                     "providers.bare.endpoint: the endpoint is the service's address alone; drop /v1",
                     "providers.nokind.project: only a provider with a kind takes it; add kind: vertex"):
        assert fragment in found, fragment


def test_a_vertex_credential_never_goes_keyless_nor_fast() -> None:
    s = parse_settings(vertex(), {})
    credential = next(c for c in s.credentials if c.provider == "vx")
    with pytest.raises(CredentialUnavailable):  # no token source: never an empty bearer
        asyncio.run(StaticSecrets().secret(credential))
    assert fast_route("chat", "gemini-4-neon", Snapshot.build(s).registry, Health(s.health), 1000.0, s) is None


def test_a_vertex_gemini_route_carries_the_shared_token_and_rewrites_the_path_whole() -> None:
    s = parse_settings(vertex(), {})
    registry, health = Snapshot.build(s).registry, Health(s.health)
    route = fast_route("gemini", "gemini-4-neon", registry, health, 1000.0, s, tokens=lambda c: "ya29.shared")
    assert route is not None and route.path == "/v1beta/models/gemini-4-neon:generateContent"
    assert route.upstream_path == \
        "/v1/projects/acme-prod/locations/us-central1/publishers/google/models/gemini-4-neon:generateContent"
    assert route.headers["authorization"] == "Bearer ya29.shared"
    assert route.headers["x-extproc-login"] == "vx:google"  # a 401 is retried with a refreshed token
    assert "x-goog-api-key" in route.remove  # the client's own key never goes along
    # No token to hand out (refused, near its expiry): the full path fetches one. Streams and client keys: too.
    assert fast_route("gemini", "gemini-4-neon", registry, health, 1000.0, s, tokens=lambda c: None) is None
    assert fast_route("gemini", "gemini-4-neon", registry, health, 1000.0, s, streams=True,
                      tokens=lambda c: "ya29.shared") is None
    keyed = parse_settings({**vertex(), "clients": {"keys": [{"name": "team", "key": "ck-team-0123456789abcdef"}]}}, {})
    assert fast_route("gemini", "gemini-4-neon", Snapshot.build(keyed).registry, Health(keyed.health), 1000.0,
                      keyed, tokens=lambda c: "ya29.shared") is None
