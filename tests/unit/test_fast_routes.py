"""Which requests may go fast, and what their routes add: the full path's own answer, in Envoy's terms."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from extproc.config import parse_settings
from extproc.core.flows import OwnClient, WindowLimit, Windows
from extproc.core.headers import ATTEMPT_HEADER, ENDPOINTS_HEADER, PLAN_HEADER, PROVIDER_HEADER, ROUTE_HEADER
from extproc.core.health import Health
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS, AuthStyle
from extproc.core.registry import Registry
from extproc.core.settings import Credential
from extproc.fast.routes import enabled, fast_route, rendered
from extproc.request.plan import Attempted, Plan, parse_attempt_header
from extproc.runtime import Snapshot

MODELS = [{"id": "a-model", "provider": "pa", "context_window": 100000},
          {"id": "b-model", "provider": "pb", "context_window": 100000,
           "capabilities": ["tools", "vision", "reasoning", "structured_output"]}]


def settings(**extra: Any) -> Any:
    return parse_settings({"discovery": False, "accounting": False, "strategy": "none", "providers": {
        "pa": {"base_url": "http://127.0.0.1:1/base", "apis": {"openai": "/v1"}, "api_key": "k-a-100%"},
        "pb": {"base_url": "http://127.0.0.1:2", "apis": {"openai": "/v1"}, "api_key": "k-b"}},
        "models": MODELS, "fallbacks": {"a-model": ["b-model"]}, **extra}, {})


def route_for(model: str, endpoint: str = "chat", **extra: Any) -> Any:
    s = settings(**extra)
    return fast_route(endpoint, model, Snapshot.build(s).registry, Health(s.health), 1000.0, s)


def test_a_direct_request_gets_the_full_paths_headers_and_when_it_was_planned() -> None:
    route = route_for("a-model")
    assert route is not None and route.path == "/v1/chat/completions"
    assert route.upstream_path == "/base/v1/chat/completions"  # the provider's prefix, as the full path sends it
    assert route.headers["authorization"] == "Bearer k-a-100%%"  # a literal to Envoy's header formatter
    assert route.headers[PROVIDER_HEADER] == "pa" and route.headers[ROUTE_HEADER] == "direct; fast"
    assert not {ATTEMPT_HEADER, PLAN_HEADER, ENDPOINTS_HEADER} & set(route.headers)  # values until rendered
    headers = rendered(route)
    assert headers[ATTEMPT_HEADER].startswith("1 pa:key1 pa/a-model chat 1000.0 ")  # as `Decision.at`
    assert parse_attempt_header(headers[ATTEMPT_HEADER]) == Attempted(1, "pa:key1", "pa", "a-model", "chat", 1000.0,
                                                                      True) == route.first
    assert set(CLIENT_CREDENTIAL_HEADERS) - {"authorization"} <= set(route.remove)
    assert not {ATTEMPT_HEADER, PLAN_HEADER, ENDPOINTS_HEADER} & set(route.remove)
    plan = Plan.from_metadata(headers[PLAN_HEADER].replace("%%", "%"))
    assert [c.model for c in plan.candidates] == ["a-model", "b-model"] and plan.at == 1000.0 and plan == route.plan
    assert headers[ENDPOINTS_HEADER] == "envoy://provider_pa/0,envoy://provider_pb/0"
    assert route.attempts == 2


def test_a_route_planned_again_alike_is_the_same_plan_and_each_renders_when_it_was_planned() -> None:
    s = settings()
    later = fast_route("chat", "a-model", Snapshot.build(s).registry, Health(s.health), 2000.5, s)
    route = route_for("a-model")
    assert later is not None and route is not None and later.same_plan(route) and later != route
    for planned, at in ((route, 1000.0), (later, 2000.5)):
        headers = rendered(planned)
        assert Plan.from_metadata(headers[PLAN_HEADER].replace("%%", "%")).at == at
        assert (attempted := parse_attempt_header(headers[ATTEMPT_HEADER])) is not None and attempted.at == at
    other = route_for("a-model", fallbacks={})
    assert other is not None and not other.same_plan(route)  # another plan: published as it is now


def test_a_model_whose_failover_would_depend_on_the_request_stays_on_the_full_path() -> None:
    s = settings(fallbacks={"b-model": ["a-model"]})  # a-model declares no capabilities: some requests skip it
    assert fast_route("chat", "b-model", Snapshot.build(s).registry, Health(s.health), 1000.0, s) is None


def test_what_needs_python_gets_no_fast_route() -> None:
    assert route_for("no-such-model") is None
    assert route_for("fast", aliases={"fast": "a-model"}) is None  # an alias rewrites the body
    assert route_for("pa/a-model") is None  # so does a qualified name
    assert route_for("a-model", "messages") is None  # another API's model: translated
    cooled = settings()
    health = Health(cooled.health)
    health.observe("pa:key1", "a-model", 429, 60.0, 1000.0)
    assert fast_route("chat", "a-model", Snapshot.build(cooled).registry, health, 1000.0, cooled) is None  # a fallback


def test_the_fast_path_is_off_where_every_request_needs_the_processor() -> None:
    assert enabled(settings())
    assert enabled(settings(accounting=True))  # Envoy reads the usage of the answers it serves
    assert not enabled(settings(accounting=True, log={"bodies": True}))  # the processor logs every body
    assert enabled(settings(accounting=False, log={"bodies": True}))  # no usage record to log them in
    assert not enabled(settings(fast_path=False))
    assert enabled(settings(clients={"keys": [{"name": "team", "key": "client-key-0123456789abcdef"}]}))
    # Keys Envoy cannot check by itself: one known only by its digest, one counted per minute across replicas.
    assert not enabled(settings(clients={"keys": [{"name": "team", "sha256": "ab" * 32},
                                                  {"name": "ci", "key": "client-key-0123456789abcdef", "rpm": 60}]}))


KEYS = [{"name": "team", "key": "client-key-0123456789abcdef"},
        {"name": "a-only", "key": "key+with/odd=chars.0123", "models": ["a-model"]},  # not its fallback
        {"name": "both", "key": "client-key-both-0123456789", "models": ["a-model", "b-model"]},
        {"name": "hashed", "sha256": "ab" * 32}, {"name": "counted", "key": "client-key-counted-012345", "rpm": 60},
        {"name": "capped", "key": "client-key-capped-0123456", "budget": {"usd": 1, "per": "day"}}]


def test_a_keyed_route_takes_the_keys_envoy_can_check_whose_requests_the_full_path_would_plan_alike() -> None:
    s = settings(clients={"keys": KEYS})
    registry, health = Snapshot.build(s).registry, Health(s.health)
    route = fast_route("chat", "a-model", registry, health, 1000.0, s)
    assert route is not None and route.clients is not None
    assert [k.name for k in route.clients] == ["team", "both", "capped"]
    spent = fast_route("chat", "a-model", registry, health, 1000.0, s, frozenset({"capped"}))
    assert spent is not None and spent.clients is not None and [k.name for k in spent.clients] == ["team", "both"]
    only_b = settings(clients={"keys": [{"name": "b", "key": "client-key-0123456789abcdef", "models": ["b-model"]}]})
    assert fast_route("chat", "a-model", Snapshot.build(only_b).registry, health, 1000.0, only_b) is None


def test_a_keyed_route_is_one_envoy_route_per_key_and_way_it_is_sent_matching_that_key_alone() -> None:
    from extproc.bootstrap.fast import envoy_routes, routes_per_model

    s = settings(clients={"keys": KEYS})
    route = fast_route("chat", "a-model", Snapshot.build(s).registry, Health(s.health), 1000.0, s)
    assert route is not None
    made = envoy_routes(route, s, [])
    assert len(made) == routes_per_model(route) == 6  # team, both, capped; each as a bearer and as x-api-key
    by_name = {r["name"]: r for r in made}
    bearer, api_key = by_name["fast chat a-model both authorization"], by_name["fast chat a-model both x-api-key"]
    assert bearer["match"]["headers"][0] == {"name": "authorization",
                                             "string_match": {"exact": "Bearer client-key-both-0123456789"}}
    assert api_key["match"]["headers"][:2] == [
        {"name": "x-api-key", "string_match": {"exact": "client-key-both-0123456789"}},
        {"name": "authorization", "present_match": True, "invert_match": True}]  # a bearer is the key when sent
    for r in (bearer, api_key):
        assert {"header": {"key": "x-extproc-client", "value": "both"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} in r["request_headers_to_add"]
        assert r["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
        overwritten = {h["header"]["key"] for h in r["request_headers_to_add"]
                       if h["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"}
        assert {"authorization", "x-api-key"} <= set(r["request_headers_to_remove"]) | overwritten  # the key stays
    assert not any("counted" in n or "hashed" in n or "a-only" in n for n in by_name)

def test_the_routes_document_is_one_route_configuration() -> None:
    from extproc.bootstrap.fast import routes_document
    from extproc.bootstrap.listeners import route_configuration

    s = settings()
    route = route_for("a-model")
    doc = orjson.loads(routes_document(route_configuration(s, [route])))
    routes = doc["resources"][0]["virtual_hosts"][0]["routes"]
    fast = next(r for r in routes if r["name"] == "fast chat a-model")
    assert routes.index(fast) < next(i for i, r in enumerate(routes) if r["name"] == "attempts")
    assert fast["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
    assert fast["route"]["retry_policy"]["num_retries"] == 1 and fast["route"]["prefix_rewrite"].startswith("/base")


def test_a_provider_that_spreads_requests_over_several_keys_keeps_them_on_the_full_path() -> None:
    keys = {"pa": {"base_url": "http://127.0.0.1:1/base", "apis": {"openai": "/v1"}, "api_keys": ["k1", "k2"]},
            "pb": {"base_url": "http://127.0.0.1:2", "apis": {"openai": "/v1"}, "api_key": "k-b"}}
    assert route_for("a-model", providers=keys) is None
    filled = {**keys, "pa": {**keys["pa"], "rotation": "fill-first"}}
    assert route_for("a-model", providers=filled) is not None  # one key at a time: the first healthy one


def test_messages_go_fast_with_translation_on_but_a_body_with_translated_thinking_takes_the_full_path() -> None:
    import re

    from extproc.bootstrap.fast import envoy_routes, fast_path_regex

    providers = {"pa": {"base_url": "http://127.0.0.1:1", "apis": {"openai": "/v1"}, "api_key": "k-a"},
                 "pm": {"base_url": "http://127.0.0.1:3", "apis": {"anthropic": "/v1"}, "api_key": "k-m",
                        "auth": "x-api-key"}}
    models = [{"id": "a-model", "provider": "pa"}, {"id": "m-model", "provider": "pm"}]  # a-model may answer it
    route = route_for("m-model", "messages", providers=providers, models=models, fallbacks={})
    assert route is not None and route.headers["x-api-key"] == "k-m"
    (made,) = envoy_routes(route, settings(providers=providers, models=models, fallbacks={}), [])
    assert {"filter": "extproc.fast", "path": [{"key": "translated"}], "value": {"bool_match": True},
            "invert": True} in made["match"]["dynamic_metadata"]  # Envoy's byte search found no mark
    # Claude Code's query is taken, passed on as it came; no other query is (a ?key= is a client key).
    path = re.compile(fast_path_regex("messages").replace("\\x{3d}", "=").replace("\\x{3f}", "\\?"))
    assert path.fullmatch("/v1/messages") and path.fullmatch("/v1/messages?beta=true")
    assert not path.fullmatch("/v1/messages?key=k") and not path.fullmatch("/v1/messages?beta=true&key=k")
    assert fast_path_regex("chat") == "/v1/chat/completions"

def test_a_model_a_login_serves_for_one_clients_requests_alone_stays_on_the_full_path() -> None:
    s = parse_settings({"discovery": False, "accounting": False, "strategy": "none", "providers": {
        "an": {"base_url": "http://127.0.0.1:3", "apis": {"anthropic": "/v1"}, "auth": "x-api-key",
               "api_key": "k-an"}}, "models": [{"id": "c-model", "provider": "an"}], "translation": False}, {})
    own = OwnClient("Claude Code", "x-anthropic-billing-header:", "oauth.claude.other_clients")
    login = Credential(id="claude-1", provider="an", account="claude-1", only_client=own)
    keyed = Registry.build(s)
    assert fast_route("messages", "c-model", keyed, Health(s.health), 1000.0, s) is not None
    # Claude Code's requests may fail over to the login, other clients' may not: the route would treat both alike
    both = Registry.build(s, (login,))
    assert fast_route("messages", "c-model", both, Health(s.health), 1000.0, s) is None
    elsewhere = Registry.build(s, (dataclasses.replace(login, provider="anthropic"),))  # serves other models
    assert fast_route("messages", "c-model", elsewhere, Health(s.health), 1000.0, s) is not None


def claude_settings(key: bool = False) -> Any:
    return parse_settings({"discovery": False, "accounting": False, "strategy": "none", "providers": {
        "an": {"base_url": "http://127.0.0.1:3", "apis": {"anthropic": "/v1"}, "auth": "x-api-key",
               "api_key": "k-an" if key else ""}},
        "models": [{"id": "c-model", "provider": "an"}], "translation": False}, {})


OWN = OwnClient("Claude Code", "x-anthropic-billing-header:", "oauth.claude.other_clients")
SENDS = Credential(id="claude-1", provider="an", account="claude-1", auth=AuthStyle.BEARER,
                   merge_headers={"anthropic-beta": "oauth-2025-04-20"})  # other_clients: send


def test_a_login_that_serves_every_client_goes_fast_with_its_current_token_and_its_401_retry_header() -> None:
    s = claude_settings()
    registry = Registry.build(s, (SENDS,))
    route = fast_route("messages", "c-model", registry, Health(s.health), 1000.0, s, tokens=lambda c: "tok-1")
    assert route is not None
    assert route.headers["authorization"] == "Bearer tok-1" and route.headers["x-extproc-login"] == "claude-1"
    assert "x-api-key" in route.remove  # the client's own credential never goes along
    # The login's beta is joined to the client's in Envoy (the route's `merge`): neither set nor removed here.
    assert route.merge == {"anthropic-beta": "oauth-2025-04-20"}
    assert "anthropic-beta" not in route.headers and "anthropic-beta" not in route.remove
    # No token to hand out (refused, near its expiry, no account manager): its requests take the full path.
    assert fast_route("messages", "c-model", registry, Health(s.health), 1000.0, s, tokens=lambda c: None) is None
    assert fast_route("messages", "c-model", registry, Health(s.health), 1000.0, s) is None


def test_a_login_that_serves_one_client_alone_keeps_its_models_on_the_full_path() -> None:
    s = claude_settings()
    refuses = dataclasses.replace(SENDS, only_client=OWN)  # other_clients: refuse
    registry = Registry.build(s, (refuses,))
    # Envoy cannot tell Claude Code's requests from the others' (the mark is in the system prompt's first block)
    assert fast_route("messages", "c-model", registry, Health(s.health), 1000.0, s, tokens=lambda c: "t") is None


def test_a_login_with_usage_windows_asks_for_its_successes_to_be_learned() -> None:
    s = claude_settings()
    windows = Windows((WindowLimit("x-5h-utilization", "x-5h-reset", name="5h"),))
    registry = Registry.build(s, (dataclasses.replace(SENDS, windows=windows),))
    route = fast_route("messages", "c-model", registry, Health(s.health), 1000.0, s, tokens=lambda c: "t")
    assert route is not None and parse_attempt_header(rendered(route)[ATTEMPT_HEADER]) is not None
    assert route.headers.get("x-extproc-learn") == "1"
    plain = fast_route("messages", "c-model", Registry.build(s, (SENDS,)), Health(s.health), 1000.0, s,
                       tokens=lambda c: "t")
    assert plain is not None and "x-extproc-learn" not in plain.headers


def test_a_route_that_merges_headers_runs_the_shared_lua_script_and_no_other_route_does() -> None:
    from extproc.bootstrap.fast import MERGE_SCRIPT, STREAM_MERGE_SCRIPT, STREAM_SCRIPT, envoy_routes
    from extproc.bootstrap.listeners import listener
    from extproc.bootstrap.names import LUA_FILTER

    s = claude_settings()
    route = fast_route("messages", "c-model", Registry.build(s, (SENDS,)), Health(s.health), 1000.0, s,
                       tokens=lambda c: "t")
    assert route is not None
    (made,) = envoy_routes(route, s, [])
    assert made["typed_per_filter_config"][LUA_FILTER] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute", "name": MERGE_SCRIPT}
    assert made["metadata"] == {"filter_metadata": {LUA_FILTER: {"merge": {"anthropic-beta": "oauth-2025-04-20"},
                                                                 "keep_as": "x-extproc-client-value-"}}}
    keyed = route_for("a-model")
    (plain,) = envoy_routes(keyed, settings(), [])
    assert LUA_FILTER not in plain["typed_per_filter_config"] and "metadata" not in plain
    chain = listener(dataclasses.replace(s, fast_routes="/nonexistent"))["filter_chains"][0]["filters"][0]
    lua = next(f for f in chain["typed_config"]["http_filters"] if f["name"] == LUA_FILTER)["typed_config"]
    assert set(lua["source_codes"]) == {STREAM_SCRIPT, MERGE_SCRIPT, STREAM_MERGE_SCRIPT}
    assert "default_source_code" not in lua  # no script for a route that names none
    # A login's stream, with accounting, keeps its answer's ends too: one script does both.
    counted = dataclasses.replace(s, accounting=True)
    stream = fast_route("messages", "c-model", Registry.build(counted, (SENDS,)), Health(s.health), 1000.0, counted,
                        streams=True, tokens=lambda c: "t")
    assert stream is not None
    (made,) = envoy_routes(stream, counted, [])
    assert made["typed_per_filter_config"][LUA_FILTER]["name"] == STREAM_MERGE_SCRIPT
    both = lua["source_codes"][STREAM_MERGE_SCRIPT]["inline_string"]
    assert "function envoy_on_request" in both and "function envoy_on_response" in both


def test_a_stream_route_goes_to_the_provider_directly_and_keeps_the_answers_ends_for_its_usage() -> None:
    from extproc.bootstrap.fast import envoy_routes
    from extproc.core.headers import STREAM_HEADER

    s = settings(accounting=True)
    stream = fast_route("chat", "a-model", Snapshot.build(s).registry, Health(s.health), 1000.0, s, streams=True)
    plain = route_for("a-model", accounting=True)
    assert stream is not None and plain is not None and stream.streams and not plain.streams
    assert STREAM_HEADER not in rendered(stream)  # no relay hop: the provider listener sends it on itself
    route = envoy_routes(stream, s, [])[0]
    flags = {m["path"][0]["key"]: not m.get("invert", False) for m in route["match"]["dynamic_metadata"][1:]}
    assert flags == {"stream": True, "include_usage": True}  # a chat stream only when it asked for its usage
    from extproc.bootstrap.fast import STREAM_SCRIPT, lua_sources

    assert route["typed_per_filter_config"]["envoy.filters.http.lua"]["name"] == STREAM_SCRIPT  # the shared script
    assert "bodyChunks" in lua_sources()[STREAM_SCRIPT]["inline_string"]
    assert route["name"] == "fast chat a-model stream"
    assert "envoy.filters.http.lua" not in envoy_routes(plain, s, [])[0]["typed_per_filter_config"]
    unaccounted = settings()
    quiet = envoy_routes(route_for("a-model"), unaccounted, [])[0]  # no usage to read: no Lua, no usage asked
    assert [m["path"][0]["key"] for m in quiet["match"]["dynamic_metadata"][1:]] == ["stream"]
    assert "envoy.filters.http.lua" not in quiet["typed_per_filter_config"]
    bare = fast_route("chat", "a-model", Snapshot.build(unaccounted).registry, Health(unaccounted.health), 1000.0,
                      unaccounted, streams=True)
    assert bare is not None
    assert {m["path"][0]["key"]: not m.get("invert", False)
            for m in envoy_routes(bare, unaccounted, [])[0]["match"]["dynamic_metadata"][1:]} == {"stream": True}


def test_a_stream_routes_plan_leaves_out_a_fallback_that_cannot_stream_as_the_full_paths_would() -> None:
    s = settings()  # b-model, a-model's fallback, declares no streaming
    stream = fast_route("chat", "a-model", Snapshot.build(s).registry, Health(s.health), 1000.0, s, streams=True)
    assert stream is not None and [c.model for c in stream.plan.candidates] == ["a-model"]
    assert [c.model for c in route_for("a-model").plan.candidates] == ["a-model", "b-model"]
