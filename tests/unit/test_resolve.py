from __future__ import annotations

from typing import Any

import pytest

from extproc.core.availability import availability
from extproc.core.errors import ClientError
from extproc.core.flows import OwnClient
from extproc.core.health import Health
from extproc.core.providers import Api, AuthStyle
from extproc.core.registry import Registry
from extproc.core.resolve import candidates, fallback_candidates, resolve
from extproc.core.settings import Credential
from extproc.core.view import RequestView
from extproc.formats.anthropic import SYSTEM_HEAD, read_count_tokens, read_messages
from tests.unit.helpers import model, provider, settings

NOW = 1_000.0
OPENAI = {"openai": "/v1"}
ANTHROPIC = {"anthropic": "/v1", "openai": "/v1"}
GEMINI = {"gemini": "", "openai": "/v1beta/openai"}

# Custom providers only; built-in ones have no key, so catalog models never win.
PROVIDERS = {
    "alpha": provider(OPENAI, "sk-alpha"),
    "beta": provider(OPENAI, "sk-beta"),
    "nokey": provider(OPENAI),
}


class World:
    def __init__(self, models: list[dict[str, Any]], providers: dict[str, Any] | None = None, **raw: Any) -> None:
        s = settings(providers=PROVIDERS if providers is None else providers, models=models, **raw)
        self.settings = s
        self.registry = Registry.build(s)
        self.health = Health(s.health)

    def resolve(self, name: str, api: Api = Api.OPENAI, now: float = NOW, turn: int = 0, **view: Any):
        return resolve(RequestView(api, name, **view), self.registry, self.health, now, turn)

    def error(self, name: str, api: Api = Api.OPENAI, now: float = NOW, **view: Any) -> ClientError:
        with pytest.raises(ClientError) as info:
            self.resolve(name, api, now, **view)
        return info.value

    def rate_limit(self, cred: str, model_id: str, seconds: float = 60, now: float = NOW) -> None:
        self.health.observe(cred, model_id, 429, seconds, now)


def chosen(decision) -> str:
    return decision.model.qualified


# ---------------------------------------------------------------- naming a model

def test_exact_id():
    d = World([model("m", "alpha")]).resolve("m")
    assert (chosen(d), d.provider.name, d.credential.id) == ("alpha/m", "alpha", "alpha:key1")
    assert (d.requested, d.reason, d.strategy, d.route) == ("m", "direct", None, "direct")


def test_provider_slash_id_picks_that_provider():
    w = World([model("shared", "alpha"), model("shared", "beta")])
    assert chosen(w.resolve("beta/shared")) == "beta/shared"
    assert chosen(w.resolve("alpha/shared")) == "alpha/shared"


def test_bare_id_served_by_two_providers_uses_the_other_when_first_is_blocked():
    w = World([model("shared", "alpha"), model("shared", "beta")], strategy="none")
    first = w.resolve("shared")
    w.rate_limit(first.credential.id, "shared")
    second = w.resolve("shared")
    assert {chosen(first), chosen(second)} == {"alpha/shared", "beta/shared"}
    assert second.reason == "direct"


def test_unknown_model_on_known_provider_passes_through():
    d = World([]).resolve("alpha/brand-new-model")
    assert (d.model.id, d.provider.name, d.credential.id, d.reason) == ("brand-new-model", "alpha", "alpha:key1",
                                                                        "direct")


def test_unknown_embedding_model_on_known_provider_passes_through():
    d = World([]).resolve("alpha/new-embedding-model", mode="embedding")
    assert (d.model.id, d.provider.name) == ("new-embedding-model", "alpha")


def test_alias():
    d = World([model("m", "alpha")], aliases={"fast": "m"}).resolve("fast")
    assert (chosen(d), d.reason, d.requested) == ("alpha/m", "alias", "fast")


@pytest.mark.parametrize("name", ["nope", "unknownprovider/m", "alpha/", "/m"])
def test_unknown_model_is_404(name):
    err = World([model("m", "alpha")]).error(name)
    assert (err.status, err.kind, err.param) == (404, "model_not_found", "model")
    assert name in err.message


@pytest.mark.parametrize(("api", "endpoint"), [(Api.ANTHROPIC, "messages"), (Api.GEMINI, "gemini")])
def test_a_provider_of_another_api_serves_translated_unless_translation_is_off(api, endpoint):
    assert chosen(World([model("m", "alpha")]).resolve("m", api, endpoint=endpoint)) == "alpha/m"
    for off in ({"translation": False}, {"providers": {**PROVIDERS, "alpha": {**PROVIDERS["alpha"],
                                                                              "translation": False}}}):
        err = World([model("m", "alpha")], **off).error("m", api, endpoint=endpoint)
        assert (err.status, err.kind) == (400, "unsupported_api")
        assert "alpha" in err.message and api.value in err.message
    no_model = World([{**model("m", "alpha"), "translation": False}]).error("m", api, endpoint=endpoint)
    assert no_model.kind == "unsupported_api"


@pytest.mark.parametrize(("model_mode", "request_mode"), [("chat", "embedding"), ("embedding", "chat")])
def test_mode_mismatch_is_400(model_mode, request_mode):
    err = World([model("m", "alpha", mode=model_mode)]).error("m", mode=request_mode)
    assert (err.status, err.kind) == (400, "unsupported_model")


# ---------------------------------------------------------------- explicit fallback chains

def test_chain_is_used_when_primary_has_no_credential():
    w = World([model("primary", "nokey"), model("second", "nokey"), model("third", "beta"),
               model("closer", "alpha")], fallbacks={"primary": ["second", "third"]})
    d = w.resolve("primary")
    assert (chosen(d), d.reason, d.strategy, d.route) == ("beta/third", "fallback", "chain", "fallback:chain")


@pytest.mark.parametrize("key", ["fast", "primary", "nokey/primary"])
def test_chain_keyed_by_alias_id_or_qualified_id(key):
    w = World([model("primary", "nokey"), model("backup", "beta")], aliases={"fast": "primary"},
              fallbacks={key: ["backup"]}, strategy="none")
    assert chosen(w.resolve("fast")) == "beta/backup"


def test_chain_entry_that_cannot_serve_the_request_is_skipped():
    w = World([model("primary", "nokey"), model("blind", "alpha", caps=("streaming",)), model("sees", "beta")],
              fallbacks={"primary": ["blind", "sees"]}, strategy="none")
    assert chosen(w.resolve("primary", needs=frozenset({"vision"}))) == "beta/sees"
    assert chosen(w.resolve("primary")) == "alpha/blind"


def test_chain_comes_before_the_strategy():
    w = World([model("primary", "nokey", price=5), model("twin", "alpha", price=5),
               model("far", "beta", price=500)], fallbacks={"primary": ["far"]}, strategy="capability-match")
    assert chosen(w.resolve("primary")) == "beta/far"
    (primary,) = w.registry.lookup("primary")
    order = [(why, m.qualified) for why, m in fallback_candidates(RequestView(Api.OPENAI, "primary"), primary,
                                                                   w.registry)]
    assert order[0] == ("chain", "beta/far")
    assert ("capability-match", "alpha/twin") in order[1:]


# ---------------------------------------------------------------- strategies

def test_same_provider_strategy_stays_on_the_provider():
    models = [model("primary", "alpha", price=10), model("sibling", "alpha", price=1, caps=("streaming",)),
              model("twin", "beta", price=10)]
    w = World(models, strategy="same-provider")
    w.rate_limit("alpha:key1", "primary")
    d = w.resolve("primary")
    assert (chosen(d), d.route) == ("alpha/sibling", "fallback:same-provider")
    err = w.error("primary", needs=frozenset({"vision"}))  # sibling lacks vision; twin is on another provider
    assert err.status == 503


def test_capability_match_prefers_same_provider_then_nearest_price_then_newest():
    models = [model("primary", "alpha", price=10),
              model("sibling", "alpha", price=0.01),
              model("cheap", "beta", price=0.1),
              model("near-old", "beta", price=8, created="2024-01-01"),
              model("near-new", "beta", price=8, created="2025-06-01"),
              model("pricey", "beta", price=100)]
    w = World(models, strategy="capability-match")
    w.rate_limit("alpha:key1", "primary")
    assert chosen(w.resolve("primary")) == "alpha/sibling"
    w.rate_limit("alpha:key1", "sibling")
    d = w.resolve("primary")
    assert (chosen(d), d.route) == ("beta/near-new", "fallback:capability-match")


def test_cost_optimized_picks_the_cheapest_suitable():
    models = [model("primary", "nokey", price=10), model("near", "alpha", price=9),
              model("cheapest-blind", "beta", price=0.01, caps=("streaming",)), model("cheap", "beta", price=0.5)]
    w = World(models, strategy="cost-optimized")
    assert chosen(w.resolve("primary")) == "beta/cheapest-blind"
    d = w.resolve("primary", needs=frozenset({"vision"}))
    assert (chosen(d), d.route) == ("beta/cheap", "fallback:cost-optimized")


def test_cost_optimized_ranks_by_blended_price():
    # blended = (3 * input + output) / 4: input dominates.
    cheap_input = {**model("cheap-input", "beta"), "input_price": 1.0, "output_price": 10.0}  # 3.25
    cheap_output = {**model("cheap-output", "beta"), "input_price": 4.0, "output_price": 0.0}  # 3.0
    w = World([model("primary", "nokey"), cheap_input, cheap_output], strategy="cost-optimized")
    assert chosen(w.resolve("primary")) == "beta/cheap-output"


@pytest.mark.parametrize("need", ["vision", "tools", "reasoning", "structured_output", "streaming"])
def test_capability_needs_filter_candidates(need):
    w = World([model("primary", "nokey", price=10), model("plain", "alpha", price=10, caps=()),
               model("full", "beta", price=50)], strategy="capability-match")
    assert chosen(w.resolve("primary")) == "alpha/plain"
    assert chosen(w.resolve("primary", needs=frozenset({need}))) == "beta/full"


@pytest.mark.parametrize(("input_tokens", "max_output", "expected"), [
    (500, None, "alpha/small"),
    (500, 500, "alpha/small"),  # exactly the window
    (2_000, None, "beta/big"),
    (500, 501, "beta/big"),  # input + requested output exceed the window
])
def test_context_window_too_small_is_excluded(input_tokens, max_output, expected):
    w = World([model("primary", "nokey", price=10), model("small", "alpha", price=10, context=1_000, max_output=0),
               model("big", "beta", price=50, context=1_000_000, max_output=0)], strategy="capability-match")
    assert chosen(w.resolve("primary", input_tokens=input_tokens, max_output_tokens=max_output)) == expected


def test_unknown_context_window_never_excludes():
    w = World([model("primary", "nokey"), model("unknown", "alpha", context=0, max_output=0)],
              strategy="capability-match")
    assert chosen(w.resolve("primary", input_tokens=10**9, max_output_tokens=10**9)) == "alpha/unknown"


@pytest.mark.parametrize(("max_output", "expected"), [(None, "alpha/short"), (1_000, "alpha/short"),
                                                      (1_001, "beta/long")])
def test_max_output_too_large_is_excluded(max_output, expected):
    w = World([model("primary", "nokey", price=10), model("short", "alpha", price=10, max_output=1_000),
               model("long", "beta", price=50, max_output=100_000)], strategy="capability-match")
    assert chosen(w.resolve("primary", max_output_tokens=max_output)) == expected


API_PROVIDERS = {
    "oai": provider(OPENAI, "k"),
    "anth": provider(ANTHROPIC, "k", auth="x-api-key"),
    "anth2": provider({"anthropic": "/v1"}, "k", auth="x-api-key"),
    "gem": provider(GEMINI, "k", auth="x-goog-api-key"),
    "gem2": provider({"gemini": ""}, "k", auth="x-goog-api-key"),
}
API_MODELS = [model("claude-main", "anth", price=5), model("gem-main", "gem", price=5),
              model("gpt-twin", "oai", price=5), model("claude-far", "anth2", price=500),
              model("gem-far", "gem2", price=500)]


@pytest.mark.parametrize(("api", "primary", "expected"), [
    (Api.ANTHROPIC, "anth/claude-main", "anth2/claude-far"),
    (Api.GEMINI, "gem/gem-main", "gem2/gem-far"),
    # The same primaries asked through the OpenAI format may go to the closest OpenAI-speaking model.
    (Api.OPENAI, "anth/claude-main", "oai/gpt-twin"),
    (Api.OPENAI, "gem/gem-main", "oai/gpt-twin"),
])
def test_fallbacks_in_the_request_api_come_before_translated_ones(api, primary, expected):
    w = World(API_MODELS, providers=API_PROVIDERS, strategy="capability-match")
    for cred in ("anth:key1", "gem:key1"):  # a rejected key is suspended for every model
        w.health.observe(cred, "any", 401, None, NOW)
    endpoint = {Api.ANTHROPIC: "messages", Api.GEMINI: "gemini"}.get(api, "chat")
    d = w.resolve(primary, api, endpoint=endpoint)
    assert chosen(d) == expected
    assert api in d.provider.apis
    for cred in ("anth2:key1", "gem2:key1"):  # with no model left in its own API, another API's serves
        w.health.observe(cred, "any", 401, None, NOW)
    if api is not Api.OPENAI:
        assert chosen(w.resolve(primary, api, endpoint=endpoint)) == "oai/gpt-twin"
        off = World(API_MODELS, providers=API_PROVIDERS, strategy="capability-match", translation=False)
        for cred in ("anth:key1", "gem:key1", "anth2:key1", "gem2:key1"):
            off.health.observe(cred, "any", 401, None, NOW)
        assert off.error(primary, api, endpoint=endpoint).status == 503


def test_a_responses_request_reaches_a_chat_only_route_translated():
    chatty = {"chatty": provider({"openai": {"path": "/v1", "endpoints": ["chat"]}}, "k")}
    assert chosen(World([model("m", "chatty")], providers=chatty).resolve("m", endpoint="responses")) == "chatty/m"
    assert World([model("m", "chatty")], providers=chatty, translation=False).error(
        "m", endpoint="responses").kind == "unsupported_api"


@pytest.mark.parametrize("endpoint", ["completions", "embeddings"])  # never translated
def test_provider_route_limited_to_some_endpoints_refuses_others(endpoint):
    mode = "embedding" if endpoint == "embeddings" else "chat"
    w = World([model("m", "chatty", mode=mode)],
              providers={"chatty": provider({"openai": {"path": "/v1", "endpoints": ["chat"]}}, "k")})
    err = w.error("m", endpoint=endpoint, mode=mode)
    assert (err.status, err.kind) == (400, "unsupported_api")
    assert endpoint in err.message
    assert chosen(w.resolve("m", endpoint="chat", mode=mode)) == "chatty/m"


@pytest.mark.parametrize(("endpoint", "expected"), [("chat", "chatty/near"), ("responses", "beta/far")])
def test_fallback_only_to_providers_serving_the_endpoint(endpoint, expected):
    w = World([model("primary", "nokey", price=10), model("near", "chatty", price=10), model("far", "beta", price=900)],
              providers={**PROVIDERS, "chatty": provider({"openai": {"path": "/v1", "endpoints": ["chat"]}}, "k")},
              strategy="capability-match")
    assert chosen(w.resolve("primary", endpoint=endpoint)) == expected


def test_deprecated_models_are_not_strategy_candidates():
    w = World([model("primary", "nokey", price=10), model("old", "alpha", price=10, status="deprecated"),
               model("new", "beta", price=100)], strategy="capability-match")
    assert chosen(w.resolve("primary")) == "beta/new"
    assert chosen(w.resolve("old")) == "alpha/old"  # still served when asked for by name


def test_deprecated_model_can_be_an_explicit_chain_entry():
    w = World([model("primary", "nokey"), model("old", "alpha", status="deprecated")],
              fallbacks={"primary": ["old"]}, strategy="none")
    assert chosen(w.resolve("primary")) == "alpha/old"


def test_strategy_none_does_not_fall_back():
    w = World([model("primary", "nokey"), model("twin", "alpha")], strategy="none")
    assert w.error("primary").status == 503


# ---------------------------------------------------------------- health and 503s

def test_cooldown_makes_primary_unavailable_until_it_expires():
    w = World([model("primary", "alpha"), model("backup", "beta")], fallbacks={"primary": ["backup"]})
    w.rate_limit("alpha:key1", "primary", seconds=30)
    assert chosen(w.resolve("primary")) == "beta/backup"
    assert chosen(w.resolve("primary", now=NOW + 29.9)) == "beta/backup"
    assert chosen(w.resolve("primary", now=NOW + 30)) == "alpha/primary"


@pytest.mark.parametrize(("now", "retry_after"), [(NOW, 8), (NOW + 5, 3), (NOW + 7.19, 1)])
def test_503_retry_after_is_soonest_recovery(now, retry_after):
    w = World([model("primary", "multi"), model("backup", "beta")], strategy="none",
              providers={**PROVIDERS, "multi": provider(OPENAI, "k1", "k2")}, fallbacks={"primary": ["backup"]})
    w.rate_limit("multi:key1", "primary", seconds=20)
    w.rate_limit("multi:key2", "primary", seconds=12)
    w.rate_limit("beta:key1", "backup", seconds=7.2)
    err = w.error("primary", now=now)
    assert (err.status, err.kind, err.retry_after) == (503, "model_unavailable", retry_after)
    assert f"{retry_after}s" in err.message


def test_no_credentials_anywhere_is_503_naming_the_env_var():
    w = World([model("m", "openai")], providers={})
    err = w.error("m")
    assert (err.status, err.kind, err.retry_after) == (503, "no_credentials", None)
    assert "OPENAI_API_KEY" in err.message and "providers.openai.api_key" in err.message


def test_no_credentials_on_custom_provider_names_the_config_key():
    err = World([model("m", "nokey")], strategy="none").error("m")
    assert (err.status, err.kind, err.retry_after) == (503, "no_credentials", None)
    assert "providers.nokey.api_key" in err.message


def test_round_robin_over_credentials():
    w = World([model("m", "multi")], providers={"multi": provider(OPENAI, "a", "b", "c")})
    assert [w.resolve("m", turn=t).credential.id for t in range(6)] == [
        "multi:key1", "multi:key2", "multi:key3", "multi:key1", "multi:key2", "multi:key3"]
    w.rate_limit("multi:key2", "m")
    assert [w.resolve("m", turn=t).credential.secret for t in range(4)] == ["a", "c", "a", "c"]


def test_resolve_does_not_change_health():
    w = World([model("m", "alpha")])
    for _ in range(3):
        w.resolve("m")
    assert w.health.blocked("alpha:key1", "m", NOW) is None


# ---------------------------------------------------------------- availability

def test_availability_reasons():
    w = World([model("m", "multi"), model("orphan", "nokey")],
              providers={**PROVIDERS, "multi": provider(OPENAI, "a", "b")})
    reg, health = w.registry, w.health
    (m,) = reg.lookup("m")
    (orphan,) = reg.lookup("orphan")

    none = availability(orphan, reg, health, NOW)
    assert (none.available, none.credentials, none.reason, none.until) == (False, 0, "no credential", None)

    fresh = availability(m, reg, health, NOW)
    assert (fresh.available, fresh.credentials, fresh.reason) == (True, 2, None)

    w.rate_limit("multi:key1", "m", seconds=50)
    assert availability(m, reg, health, NOW).available  # key2 still serves it

    health.observe("multi:key2", "other-model", 401, None, NOW)  # suspends key2 for every model
    state = availability(m, reg, health, NOW)
    assert (state.available, state.credentials, state.until) == (False, 2, NOW + 50)  # the soonest recovery
    assert "cool" in state.reason and "rate limited (429), retry-after 50s" in state.reason

    after = availability(m, reg, health, NOW + 50)
    assert (after.available, after.reason) == (True, None)


def test_availability_of_a_suspended_model():
    w = World([model("m", "alpha")])
    w.health.observe("alpha:key1", "m", 404, None, NOW, endpoint="chat")
    (m,) = w.registry.lookup("m")
    state = availability(m, w.registry, w.health, NOW)
    assert (state.available, state.credentials, state.until) == (False, 1, NOW + w.settings.health.not_found_suspension)
    assert state.reason.startswith("suspended") and "model not found (404)" in state.reason


def test_a_404_on_one_endpoint_leaves_the_model_usable_on_others():
    """Providers answer 404 for an endpoint they lack, not only for a missing model."""
    w = World([model("m", "alpha")])
    w.health.observe("alpha:key1", "m", 404, None, NOW, endpoint="responses")
    assert resolve(RequestView(Api.OPENAI, "m", endpoint="chat"), w.registry, w.health, NOW).model.id == "m"
    with pytest.raises(ClientError) as caught:
        resolve(RequestView(Api.OPENAI, "m", endpoint="responses"), w.registry, w.health, NOW)
    assert caught.value.status == 503


@pytest.mark.parametrize(("name", "api", "endpoint", "owner"), [
    ("claude-opus-4-1-20250805", Api.ANTHROPIC, "messages", "anthropic"),
    ("gpt-7-preview", Api.OPENAI, "chat", "openai"),
    ("gemini-9-flash", Api.GEMINI, "gemini", "gemini"),
])
def test_unknown_ids_a_provider_claims_by_prefix_pass_through(name: str, api: Api, endpoint: str, owner: str) -> None:
    s = settings(providers={p: {"api_key": f"sk-{p}"} for p in ("openai", "anthropic", "gemini")})
    decision = resolve(RequestView(api, name, endpoint=endpoint), Registry.build(s), Health(s.health), 0.0)
    assert (decision.provider.name, decision.model.id, decision.reason) == (owner, name, "direct")


def test_an_unknown_id_no_prefix_claims_is_404() -> None:
    s = settings(providers={"anthropic": {"api_key": "sk-a"}})
    with pytest.raises(ClientError) as caught:
        resolve(RequestView(Api.ANTHROPIC, "no-such-model", endpoint="messages"), Registry.build(s),
                Health(s.health), 0.0)
    assert caught.value.status == 404


# ---------------------------------------------------------------- never another model unless the config says so

LOCAL_ONLY = {"local": provider(OPENAI, "local-secret", base_url="http://127.0.0.1:8000")}  # no cloud key
MY_LLAMA = {"id": "my-llama", "provider": "local", "context_window": 32768, "capabilities": ["tools", "streaming"]}
SDK_REQUESTS = [("gpt-6-luna", Api.OPENAI, "chat"), ("claude-sonnet-5-5", Api.ANTHROPIC, "messages"),
                ("gemini-3.8-flash", Api.GEMINI, "gemini")]


@pytest.mark.parametrize(("name", "api", "endpoint"), SDK_REQUESTS)
def test_by_default_a_model_is_never_answered_by_another(name: str, api: Api, endpoint: str) -> None:
    w = World([MY_LLAMA], providers=LOCAL_ONLY)  # the catalog's models, and one local model with a key
    assert w.settings.strategy == "none"
    err = w.error(name, api, endpoint=endpoint)
    assert (err.status, err.kind, err.retry_after) == (503, "no_credentials", None)
    assert name in err.message and "the config names no fallback for it" in err.message
    (primary,) = w.registry.lookup(name)
    assert list(fallback_candidates(RequestView(api, name, endpoint=endpoint), primary, w.registry)) == []


@pytest.mark.parametrize(("name", "api", "endpoint"), SDK_REQUESTS)
@pytest.mark.parametrize("config", [{"strategy": "capability-match"}, {"fallbacks": {"gpt-6-luna": ["my-llama"],
                                    "claude-sonnet-5-5": ["my-llama"], "gemini-3.8-flash": ["my-llama"]}}])
def test_a_strategy_or_fallback_the_config_sets_still_replaces_it(name: str, api: Api, endpoint: str,
                                                                   config: dict[str, Any]) -> None:
    d = World([MY_LLAMA], providers=LOCAL_ONLY, **config).resolve(name, api, endpoint=endpoint)
    why = "fallback:chain" if "fallbacks" in config else "fallback:capability-match"
    assert (chosen(d), d.requested, d.route) == ("local/my-llama", name, why)


def test_the_model_itself_on_a_provider_of_another_api_is_no_replacement() -> None:
    """Serving the model asked for through another API (translated) needs no fallback."""
    d = World([model("shared-model", "alpha")]).resolve("shared-model", Api.ANTHROPIC, endpoint="messages")
    assert (chosen(d), d.route) == ("alpha/shared-model", "direct")


def test_a_configured_fallback_that_cannot_serve_says_so() -> None:
    w = World([model("primary", "nokey"), model("blind", "alpha", caps=())], fallbacks={"primary": ["blind"]})
    assert "no fallback can take the request" in w.error("primary", needs=frozenset({"vision"})).message


def test_an_embedding_request_is_never_translated() -> None:
    """Gemini's embedContent shares the endpoint name of generateContent; only the latter translates."""
    w = World([model("embed", "alpha", mode="embedding"), model("chat", "alpha")])
    err = w.error("embed", Api.GEMINI, endpoint="gemini", mode="embedding")
    assert (err.status, err.kind) == (400, "unsupported_api")
    assert chosen(w.resolve("chat", Api.GEMINI, endpoint="gemini")) == "alpha/chat"


# ---------------------------------------------------------------- logins that serve one client's requests

CLAUDE_CODE = OwnClient("Claude Code", "x-anthropic-billing-header:", "oauth.claude.other_clients")
BILLING = "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;"


def login_world(*keys: str, own: OwnClient | None = CLAUDE_CODE) -> tuple[Registry, Health]:
    s = settings(providers={"an": provider({"anthropic": "/v1"}, *keys, auth="x-api-key")},
                 models=[model("cm", "an")])
    login = Credential(id="claude-1", provider="an", account="claude-1", auth=AuthStyle.BEARER, only_client=own)
    return Registry.build(s, (login,)), Health(s.health)


def ask(registry: Registry, health: Health, system_head: str = "", limit: int = 3) -> list[str]:
    view = RequestView(Api.ANTHROPIC, "cm", endpoint="messages", system_head=system_head)
    return [d.credential.id for d in candidates(view, registry, health, NOW, limit=limit)]


def test_a_login_for_one_client_serves_that_clients_requests_only():
    registry, health = login_world()
    assert ask(registry, health, BILLING) == ["claude-1"]
    with pytest.raises(ClientError) as refused:
        ask(registry, health, "You are a helpful assistant.")
    error = refused.value
    assert (error.status, error.kind, error.retryable) == (403, "login_not_for_client", False)
    assert "Claude Code" in error.message and "`oauth.claude.other_clients: send`" in error.message


def test_any_clients_token_count_may_go_on_the_login_it_spends_nothing():
    registry, health = login_world()
    view = read_count_tokens({"model": "cm", "messages": [], "system": "Be brief."}, None)  # type: ignore[arg-type]
    assert view.counts_tokens and [d.credential.id for d in candidates(view, registry, health, NOW)] == ["claude-1"]


def test_another_clients_request_goes_to_the_keys_and_claude_codes_may_use_both():
    registry, health = login_world("sk-an")
    assert ask(registry, health, "Be brief.") == ["an:key1"]
    assert ask(registry, health, BILLING) == ["an:key1", "claude-1"]


def test_a_login_the_operator_opened_to_every_client_serves_any_request():
    registry, health = login_world(own=None)
    assert ask(registry, health, "") == ask(registry, health, BILLING) == ["claude-1"]


@pytest.mark.parametrize(("system", "head"), [
    ([{"type": "text", "text": BILLING}, {"type": "text", "text": "You are Claude Code."}], BILLING),
    (BILLING + " and more" * 20, (BILLING + " and more" * 20)[:SYSTEM_HEAD]),
    ([{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": BILLING}], "You are Claude Code."),
    (None, ""), ([], ""), ([{"type": "image"}], ""), (7, ""),
])
def test_the_system_prompts_start_is_read_from_its_first_block(system: object, head: str):
    doc: dict[str, Any] = {"model": "cm", "messages": []} if system is None else \
        {"model": "cm", "messages": [], "system": system}
    assert read_messages(doc, None).system_head == head  # type: ignore[arg-type]
