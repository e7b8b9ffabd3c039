from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from extproc.config import load_settings, parse_settings
from extproc.core.errors import ConfigError
from extproc.core.providers import Api, AuthStyle
from extproc.core.settings import Address, Credential, HealthPolicy
from extproc.formats import ENDPOINTS, match_endpoint
from tests.unit.helpers import model, provider, settings

BUILTIN_PROVIDERS = {"openai", "anthropic", "gemini", "groq", "mistral"}
OPENAI_ONLY = {"openai": "/v1"}


def config_error(raw: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, env or {})
    return str(info.value)


# ---------------------------------------------------------------- defaults and loading

def test_defaults():
    s = settings()
    assert s.listen == Address("127.0.0.1", 10000)
    assert s.processor == Address("127.0.0.1", 50051)
    assert s.admin == Address("127.0.0.1", 9901)
    assert set(s.providers) >= BUILTIN_PROVIDERS
    assert s.strategy == "none"  # only the fallbacks a config names
    assert s.health == HealthPolicy()
    assert (s.max_request_bytes, s.max_connections, s.upstream_timeout) == (32 * 1024 * 1024, 10000, 600.0)
    assert s.credentials == ()  # no key is invented
    assert s.models and {m.provider for m in s.models} <= set(s.providers)


def test_builtin_provider_facts_are_typed():
    anthropic = settings().providers["anthropic"]
    assert anthropic.auth is AuthStyle.X_API_KEY
    assert anthropic.apis[Api.ANTHROPIC].auth is AuthStyle.X_API_KEY
    assert anthropic.apis[Api.OPENAI].auth is AuthStyle.BEARER  # per-route auth override
    assert anthropic.api_key_env == "ANTHROPIC_API_KEY"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ()),
    ({"OPENAI_API_KEY": "sk-o"}, (("openai:key1", "openai", "sk-o"),)),
    ({"GROQ_API_KEY": "sk-g", "MISTRAL_API_KEY": ""}, (("groq:key1", "groq", "sk-g"),)),
])
def test_embedded_default_config_reads_keys_from_env(env, expected):
    s = load_settings(None, env)
    assert s.listen == Address("127.0.0.1", 10000)
    assert tuple((c.id, c.provider, c.secret) for c in s.credentials) == expected


def test_load_settings_from_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("listen: {port: 8080}\nproviders:\n  openai: {api_key: '${K}'}\n")
    s = load_settings(path, {"K": "sk-file"})
    assert s.listen == Address("127.0.0.1", 8080)
    assert [c.secret for c in s.credentials] == ["sk-file"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("listen: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_load_settings_rejects_bad_files(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(path, {})


def test_load_settings_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_settings(tmp_path / "nope.yaml", {})


# ---------------------------------------------------------------- ${VAR} expansion

@pytest.mark.parametrize(("value", "env", "expected"), [
    ("${K}", {"K": "sk-1"}, "sk-1"),
    ("pre-${A}-${B}-post", {"A": "x", "B": "y"}, "pre-x-y-post"),
    ("${K:-fallback}", {}, "fallback"),
    ("${K:-fallback}", {"K": "set"}, "set"),
    ("${K:-}", {}, None),  # optional and unset: no credential at all
])
def test_env_expansion(value, env, expected):
    s = settings(env, providers={"openai": {"api_key": value}})
    assert [c.secret for c in s.credentials] == ([expected] if expected else [])


def test_env_default_applies_when_var_is_empty():
    assert settings({"S": ""}, strategy="${S:-none}").strategy == "none"


@pytest.mark.parametrize(("raw", "key"), [
    ({"providers": {"openai": {"api_key": "${MISSING}"}}}, "providers.openai.api_key"),
    ({"providers": {"openai": {"api_keys": ["${MISSING:-}", "${MISSING}"]}}}, "providers.openai.api_keys[1]"),
    ({"strategy": "${MISSING}"}, "strategy"),
])
def test_unset_env_var_is_an_error_naming_key_and_var(raw, key):
    message = config_error(raw)
    assert message.startswith(f"{key}:")
    assert "MISSING" in message


# ---------------------------------------------------------------- errors name the key

@pytest.mark.parametrize(("raw", "key"), [
    # unknown keys, at every level
    ({"bogus": 1}, "bogus"),
    ({"listen": {"adress": "0.0.0.0"}}, "listen.adress"),
    ({"providers": {"openai": {"apikey": "x"}}}, "providers.openai.apikey"),
    ({"providers": {"acme": provider({"openai": {"path": "/v1", "x": 1}})}}, "providers.acme.apis.openai.x"),
    ({"models": [{"id": "m", "provider": "openai", "price": 1}]}, "models[0].price"),
    ({"health": {"backof_base": 1}}, "health.backof_base"),
    ({"envoy": {"threads": 2}}, "envoy.threads"),
    # bad values
    ({"listen": {"port": 70000}}, "listen.port"),
    ({"upstream_timeout": 0}, "upstream_timeout"),
    ({"max_request_bytes": -1}, "max_request_bytes"),
    ({"max_request_bytes": True}, "max_request_bytes"),
    ({"max_connections": 0}, "max_connections"),
    ({"log_level": "loud"}, "log_level"),
    ({"envoy": {"concurrency": 0}}, "envoy.concurrency"),
    ({"health": {"backoff_max": -1}}, "health.backoff_max"),
    ({"providers": {"openai": {"auth": "basic"}}}, "providers.openai.auth"),
    ({"providers": {"Bad Name": {}}}, "providers.Bad Name"),
    ({"providers": {"acme": provider({"soap": "/v1"})}}, "providers.acme.apis.soap"),
    ({"providers": {"acme": provider({"openai": "v1"})}}, "providers.acme.apis.openai"),
    ({"providers": {"acme": provider({})}}, "providers.acme.apis"),
    ({"providers": {"openai": {"api_keys": "sk-1"}}}, "providers.openai.api_keys"),
    ({"models": [model("m", "openai", context=-1)]}, "models[m].context_window"),
    ({"models": [model("m", "openai", caps=("telepathy",))]}, "models[m].capabilities[0]"),
    ({"models": [model("m", "openai", mode="audio")]}, "models[m].mode"),
    ({"models": [{**model("m", "openai"), "created": "yesterday"}]}, "models[m].created"),
    ({"models": [model("m", "nowhere")]}, "models[m].provider"),
    ({"models": [{"id": "brand-new"}]}, "models[0].provider"),
    ({"models": [{"provider": "openai"}]}, "models[0].id"),
    ({"models": [{"id": "m", "provider": "openai", "discovered": True}]}, "models[0].discovered"),
])
def test_error_names_the_key(raw, key):
    assert config_error(raw).startswith(f"{key}:")


# ---------------------------------------------------------------- providers

@pytest.mark.parametrize("section", [
    {"base_url": "https://acme.example.com"},
    {"apis": OPENAI_ONLY},
    {},
])
def test_custom_provider_needs_base_url_and_apis(section):
    message = config_error({"providers": {"acme": section}})
    assert message.startswith("providers.acme:")
    assert "base_url and apis" in message


@pytest.mark.parametrize("url", ["ftp://acme.example.com", "acme.example.com", "https://", "not a url"])
@pytest.mark.parametrize("name", ["acme", "openai"])
def test_bad_base_url(name, url):
    section = provider(OPENAI_ONLY, base_url=url) if name == "acme" else {"base_url": url}
    assert config_error({"providers": {name: section}}).startswith(f"providers.{name}.base_url:")


def test_custom_provider_is_parsed():
    s = settings(providers={"acme": {
        "base_url": "http://127.0.0.1:8080/prefix/", "auth": "x-api-key", "api_key": "sk-acme",
        "headers": {"X-Team": "blue"}, "apis": {"openai": "/v1/", "anthropic": {"path": "/anth", "auth": "bearer"}},
    }})
    acme = s.providers["acme"]
    assert acme.headers == {"x-team": "blue"}  # header names are lower-cased
    assert acme.apis[Api.OPENAI].path_prefix == "/v1"  # trailing slash dropped
    assert acme.apis[Api.OPENAI].auth is AuthStyle.X_API_KEY
    assert acme.apis[Api.ANTHROPIC].auth is AuthStyle.BEARER
    assert acme.upstream_path(Api.OPENAI, "/chat/completions") == "/prefix/v1/chat/completions"
    assert [c.id for c in s.credentials] == ["acme:key1"]


@pytest.mark.parametrize(("route", "serves"), [
    ("/v1", {"chat", "completions", "responses", "embeddings"}),
    ({"path": "/v1", "endpoints": ["chat", "embeddings"]}, {"chat", "embeddings"}),
    ({"path": "/v1", "endpoints": []}, set()),
])
def test_api_route_endpoints(route, serves):
    acme = settings(providers={"acme": provider({"openai": route})}).providers["acme"]
    assert {e for e in ENDPOINTS[Api.OPENAI] if acme.speaks(Api.OPENAI, e)} == serves
    assert not acme.speaks(Api.ANTHROPIC, "messages")


@pytest.mark.parametrize(("apis", "key"), [
    ({"openai": {"path": "/v1", "endpoints": ["messages"]}}, "providers.acme.apis.openai.endpoints[0]"),
    ({"anthropic": {"path": "/v1", "endpoints": ["chat"]}}, "providers.acme.apis.anthropic.endpoints[0]"),
    ({"openai": {"path": "/v1", "endpoints": "chat"}}, "providers.acme.apis.openai.endpoints"),
])
def test_bad_api_route_endpoints(apis, key):
    assert config_error({"providers": {"acme": provider(apis)}}).startswith(f"{key}:")


def test_endpoint_names_match_the_formats():
    """The names config accepts are exactly those the request paths produce."""
    paths = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages",
             "/v1/messages/count_tokens", "/v1beta/models/m:generateContent"]
    produced: dict[Api, set[str]] = {}
    for path in paths:
        endpoint = match_endpoint(path)
        assert endpoint is not None
        produced.setdefault(endpoint.api, set()).add(endpoint.name)
    assert produced == {api: set(names) for api, names in ENDPOINTS.items()}


def test_overriding_a_builtin_provider_keeps_its_other_facts():
    base = settings().providers["anthropic"]
    moved = settings(providers={"anthropic": {"base_url": "http://127.0.0.1:9999"}}).providers["anthropic"]
    assert moved.base_url == "http://127.0.0.1:9999"
    assert (moved.auth, moved.apis, moved.headers) == (base.auth, base.apis, base.headers)


# ---------------------------------------------------------------- credentials

@pytest.mark.parametrize(("section", "expected"), [
    ({"api_keys": ["a", "b"]}, [("openai:key1", "a"), ("openai:key2", "b")]),
    ({"api_key": "solo", "api_keys": ["a", "b"]}, [("openai:key1", "solo"), ("openai:key2", "a"),
                                                   ("openai:key3", "b")]),
    ({"api_keys": ["", "a", ""]}, [("openai:key1", "a")]),  # empty (unset optional vars) are skipped
    ({"api_key": ""}, []),
])
def test_api_keys_give_several_credentials(section, expected):
    creds = settings(providers={"openai": section}).credentials
    assert [(c.id, c.secret) for c in creds] == expected
    assert all(c.provider == "openai" for c in creds)


def test_secrets_never_appear_in_repr():
    secret = "sk-very-secret-value"
    s = settings(providers={"openai": {"api_keys": [secret, secret + "2"]}})
    cred = s.credentials[0]
    assert cred == Credential("openai:key1", "openai", secret)
    for text in (repr(cred), str(cred), repr(s.credentials), repr(s)):
        assert secret not in text
    assert "openai:key1" in repr(cred)


# ---------------------------------------------------------------- models

def _unique_catalog_model():
    models = settings().models
    counts = Counter(m.id for m in models)
    return next(m for m in models if counts[m.id] == 1), len(models)


@pytest.mark.parametrize("with_provider", [True, False])
def test_model_override_merges_with_catalog_entry(with_provider):
    original, count = _unique_catalog_model()
    entry = {"id": original.id, "input_price": original.input_price + 1.5}
    if with_provider:
        entry["provider"] = original.provider
    s = settings(models=[entry])
    overridden = [m for m in s.models if m.id == original.id]
    assert overridden == [dataclasses.replace(original, input_price=original.input_price + 1.5)]
    assert len(s.models) == count  # merged, not added


def test_new_model_gets_documented_defaults():
    s = settings(models=[{"id": "mine", "provider": "openai"}])
    (mine,) = [m for m in s.models if m.id == "mine"]
    assert (mine.mode, mine.capabilities, mine.context_window, mine.status) == ("chat", {"streaming"}, 0, "active")
    assert mine.qualified == "openai/mine"


def test_created_date_is_parsed():
    s = settings(models=[model("mine", "openai", created="2025-09-29")])
    (mine,) = [m for m in s.models if m.id == "mine"]
    assert mine.created is not None and mine.created.isoformat() == "2025-09-29"
    assert mine.created_ts == 1759104000  # 2025-09-29T00:00:00Z


def test_model_on_custom_provider():
    s = settings(providers={"acme": provider(OPENAI_ONLY)}, models=[model("m", "acme", price=2.0)])
    (m,) = [m for m in s.models if m.provider == "acme"]
    assert (m.id, m.input_price, m.output_price, m.blended_price) == ("m", 2.0, 2.0, 2.0)


# ---------------------------------------------------------------- aliases, fallbacks, strategy

MODELS = [model("m1", "openai"), model("m2", "openai")]


def test_aliases_accept_ids_and_qualified_ids():
    s = settings(models=MODELS, aliases={"fast": "m1", "exact": "openai/m2"})
    assert s.aliases == {"fast": "m1", "exact": "openai/m2"}


@pytest.mark.parametrize(("aliases", "key", "fragment"), [
    ({"fast": "nope"}, "aliases.fast", "not a known model"),
    ({"m1": "m2"}, "aliases.m1", "already a model id"),
    ({"openai/m1": "m2"}, "aliases.openai/m1", "already a model id"),
    ({"fast": ""}, "aliases.fast", "non-empty string"),
])
def test_bad_aliases(aliases, key, fragment):
    message = config_error({"models": MODELS, "aliases": aliases})
    assert message.startswith(f"{key}:")
    assert fragment in message


def test_fallbacks_accept_models_and_aliases():
    s = settings(models=MODELS, aliases={"fast": "m1"}, fallbacks={"fast": ["m2", "openai/m1"], "m2": ["fast"]})
    assert s.fallbacks == {"fast": ("m2", "openai/m1"), "m2": ("fast",)}


@pytest.mark.parametrize(("fallbacks", "key"), [
    ({"nope": ["m1"]}, "fallbacks.nope"),
    ({"m1": ["m2", "nope"]}, "fallbacks.m1[1]"),
    ({"m1": []}, "fallbacks.m1"),
    ({"m1": "m2"}, "fallbacks.m1"),
])
def test_bad_fallbacks(fallbacks, key):
    assert config_error({"models": MODELS, "fallbacks": fallbacks}).startswith(f"{key}:")


@pytest.mark.parametrize(("raw", "key"), [
    ({"models": MODELS, "fallbacks": {"m1": [["m2"]]}}, "fallbacks.m1"),
    ({"models": [{**model("m", "openai"), "capabilities": [{"vision": True}]}]}, "models[m].capabilities"),
    ({"providers": {"acme": provider({"openai": {"path": "/v1", "endpoints": [{"chat": 1}]}})}},
     "providers.acme.apis.openai.endpoints"),
])
def test_unhashable_entries_are_config_errors(raw, key):
    assert config_error(raw).startswith(f"{key}:")


@pytest.mark.parametrize("strategy", ["capability-match", "same-provider", "cost-optimized", "none"])
def test_valid_strategies(strategy):
    assert settings(strategy=strategy).strategy == strategy


@pytest.mark.parametrize("strategy", ["cheapest", "", None, 3])
def test_invalid_strategy(strategy):
    assert config_error({"strategy": strategy}).startswith("strategy:")


@pytest.mark.parametrize("bad", ["sk-abc\n", "sk abc", "sk-\u200babc"])
def test_keys_with_whitespace_or_non_ascii_are_refused_without_echoing_them(bad):
    with pytest.raises(ConfigError) as caught:
        settings(providers={"openai": {"api_key": bad}})
    assert "providers.openai" in str(caught.value) and bad.strip() not in str(caught.value)


def test_yaml_errors_give_the_position_and_the_reason_not_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  openai:\n    api_key: sk-live-secret: oops\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path} is not valid YAML at line 3, column 28: mapping values are not allowed here"


def test_a_base_url_that_already_ends_with_the_api_prefix_is_refused():
    """A copy from vLLM/Ollama docs (…/v1) would send /v1/v1/chat/completions."""
    with pytest.raises(ConfigError) as caught:
        settings(providers={"local": {"base_url": "http://127.0.0.1:8000/v1", "apis": {"openai": "/v1"}}})
    assert str(caught.value).startswith("providers.local.base_url:") and "drop /v1 from base_url" in str(caught.value)


@pytest.mark.parametrize(("raw", "hint"), [
    ({"listn": {"port": 1}}, "listn: unknown key (did you mean listen?)"),
    ({"providers": {"opnai": {"api_key": "sk-x"}}}, "providers.opnai: not a built-in provider (did you mean openai?)"),
])
def test_typos_get_a_suggestion(raw, hint):
    with pytest.raises(ConfigError) as caught:
        settings(**raw)
    assert str(caught.value).startswith(hint)


def test_every_unset_variable_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        settings(providers={"openai": {"api_keys": ["${KEY_A}", "${KEY_B}"]}, "anthropic": {"api_key": "${KEY_C}"}})
    assert str(caught.value).splitlines() == [
        f"{key}: environment variable {name} is not set; set it, or write ${{{name}:-}} to make it optional"
        for key, name in (("providers.openai.api_keys[0]", "KEY_A"), ("providers.openai.api_keys[1]", "KEY_B"),
                          ("providers.anthropic.api_key", "KEY_C"))]


# ---------------------------------------------------------------- every error at once, in file order

TYPOS = """\
models:
  - {id: mine, provider: openai, context_window: -1}
listen: {adress: 127.0.0.1}
providers:
  openai: {apikey: sk-x, auth: basic}
aliases: {fast: nope}
strategy: cheapest
clients: {keys: [{name: me, key: "${UNSET_CLIENT_KEY}"}]}
log_level: loud
"""


def test_one_run_reports_every_error_in_the_order_of_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(TYPOS)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    keys = [line.split(": ", 1)[0] for line in str(caught.value).splitlines()]
    assert keys == ["models[mine].context_window", "listen.adress", "providers.openai.apikey",
                    "providers.openai.auth", "aliases.fast", "strategy", "clients.keys[0].key", "log_level"]
    assert "did you mean address?" in str(caught.value)  # each still says the fix


def test_an_entry_with_an_error_is_not_reported_again_through_what_names_it():
    """A provider or model with an error is one error, not one more for each model, alias or fallback naming it."""
    message = config_error({"providers": {"acme": provider(OPENAI_ONLY, auth="basic")},
                            "models": [model("m", "acme", mode="audio")],
                            "aliases": {"fast": "m"}, "fallbacks": {"m": ["acme/m"]}})
    assert [line.split(": ", 1)[0] for line in message.splitlines()] == ["providers.acme.auth", "models[m].mode"]


def test_commands_that_serve_nothing_load_without_the_secrets_they_do_not_use(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  openai: {api_key: '${UNSET_PROVIDER_KEY}'}\n"
                    "clients: {keys: [{name: me, key: '${UNSET_CLIENT_KEY}'}]}\nstrategy: '${UNSET_STRATEGY}'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {}, secrets=False)
    assert [line.split(": ", 1)[0] for line in str(caught.value).splitlines()] == ["strategy"]  # not a secret
    path.write_text(path.read_text().replace("'${UNSET_STRATEGY}'", "none"))
    with pytest.raises(ConfigError, match="UNSET_PROVIDER_KEY"):
        load_settings(path, {})
    s = load_settings(path, {}, secrets=False)
    assert s.credentials == ()  # the provider key stays unset
    assert [k.name for k in s.clients.keys] == ["me"]
    assert identify_name(s, "") is None and identify_name(s, "x" * 16) is None  # the stand-in matches no key


def identify_name(s, key):
    from extproc.core.clients import digest
    return next((k.name for k in s.clients.keys if k.sha256 == digest(key)), None)


def test_probes_default_to_the_model_list_and_are_validated():
    s = settings(providers={"openai": {"api_key": "k"}, "groq": {"api_key": "k", "probe": False}})
    assert s.providers["openai"].probe is not None and s.providers["openai"].probe.path == "/v1/models"
    assert s.providers["groq"].probe is None
    assert s.providers["codeassist"].probe is not None and s.providers["codeassist"].probe.method == "POST"
    with pytest.raises(ConfigError, match=r"providers.openai.probe.body: only a POST probe"):
        settings(providers={"openai": {"api_key": "k", "probe": {"path": "/v1/models", "body": {"a": 1}}}})
    with pytest.raises(ConfigError, match=r"providers.openai.probe.method"):
        settings(providers={"openai": {"api_key": "k", "probe": {"path": "/v1/models", "method": "PUT"}}})


def test_the_relay_port_follows_the_processor_port_and_is_validated():
    assert parse_settings({"processor": {"port": 6000}}, {}).relay.port == 6001
    assert parse_settings({"processor": {"port": 6000, "relay_port": 7000}}, {}).relay.port == 7000
    with pytest.raises(ConfigError, match="processor.relay_port"):
        parse_settings({"processor": {"port": 6000, "relay_port": 6000}}, {})


def test_workers_need_shared_health_and_default_to_the_cores_with_it():
    import os
    assert parse_settings({}, {}).workers == 1
    from tests.conftest import STATE_KEY
    shared = {"state": {"redis": {"url": "redis://127.0.0.1:6379/0", "key": STATE_KEY}}}
    assert parse_settings(shared, {}).workers == len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="processor.workers: 2 processes share health through Redis"):
        parse_settings({"processor": {"workers": 2}}, {})
    s = parse_settings({**shared, "processor": {"port": 7000, "workers": 3}}, {})
    assert [a.port for a in s.processor_addresses] == [7000, 7001, 7002]
    assert [a.port for a in s.relay_addresses] == [7003, 7004, 7005]
    assert s.worker(2).processor.port == 7002 and s.worker(2).relay.port == 7005
    with pytest.raises(ConfigError, match="processor.relay_port"):
        parse_settings({**shared, "processor": {"port": 7000, "workers": 3, "relay_port": 7002}}, {})


def test_logins_in_redis_need_an_encryption_key():
    with pytest.raises(ConfigError, match=r"state.redis.key: logins in Redis are encrypted"):
        parse_settings({"state": {"redis": {"url": "redis://127.0.0.1:6379/0"}}}, {})
    with pytest.raises(ConfigError, match=r"state.redis.key: not a Fernet key"):
        parse_settings({"state": {"redis": {"url": "redis://127.0.0.1:6379/0", "key": "short"}}}, {})


@pytest.mark.parametrize("value, enabled", [(True, True), (False, False), ({"ttl": 60}, True), (None, True)])
def test_the_discovery_section_takes_a_boolean_or_a_mapping(value: object, enabled: bool) -> None:
    """`discovery: true` reads as the defaults switched on (it was refused as "expected a mapping")."""
    found = parse_settings({"discovery": value, "providers": {"openai": {"api_key": "k"}}}, {})
    assert found.providers["openai"].discovery is not None
    assert found.providers["openai"].discovery.enabled is enabled


def test_an_unknown_provider_of_a_model_is_told_with_the_valid_names_in_order() -> None:
    """The hint lists configured providers, sorted (the same words every run); a provider whose own entry is
    broken (reported already) is neither offered nor reported again for its models."""
    with pytest.raises(ConfigError) as err:
        parse_settings({"providers": {"badname!": {"api_key": "k"}},
                        "models": [{"id": "x", "provider": "ghost"}, {"id": "y", "provider": "badname!"}]}, {})
    text = str(err.value)
    assert "'ghost' is not a configured provider" in text and "'badname!' is not" not in text
    offered = text.split("use one of ")[1].split("\n")[0].split(", ")
    assert offered == sorted(offered) and "badname!" not in offered and "openai" in offered


def test_fast_routes_names_the_routes_directory_of_an_envoy_rendered_ahead() -> None:
    assert parse_settings({}, {}).fast_routes is None  # `extproc up` makes its own
    assert parse_settings({"fast_routes": "/run/extproc/routes"}, {}).fast_routes == "/run/extproc/routes"
    assert config_error({"fast_routes": 3}) == "fast_routes: expected a non-empty string"
