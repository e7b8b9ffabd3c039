"""The exchange driven by plain events, as the edge drives it: no gRPC, no Envoy, no network."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from email.utils import format_datetime
from typing import Any

import pytest

from extproc.core.headers import (
    ACCOUNT_HEADER,
    ATTEMPT_HEADER,
    ENVOY_REQUEST_HEADERS,
    INTERNAL_HEADERS,
    LOGIN_HEADER,
    MODEL_HEADER,
    PROVIDER_HEADER,
    RELAY_HEADERS,
    ROUTE_HEADER,
    STREAM_HEADER,
    UPSTREAM_API_HEADER,
)
from extproc.core.health import Block, parse_retry_after
from extproc.core.providers import CLIENT_CREDENTIAL_HEADERS
from extproc.core.settings import Settings
from extproc.request.actions import Continue, Mutate, Reply
from extproc.request.exchange import Exchange
from extproc.request.gateway import Gateway
from extproc.request.learning import learn_attempt
from extproc.request.mutation import Forward
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import ASKS_FOR_THE_ANSWER, model, settings

T = 1_700_000_000.0
SECRETS = {"openai": "sk-openai-test", "anthropic": "sk-anthropic-test", "gemini": "sk-gemini-test",
           "groq": "sk-groq-test"}  # mistral has no key
MODELS = {"gw-openai": "openai", "gw-openai-backup": "openai", "gw-claude": "anthropic", "gw-gemini": "gemini",
          "gw-groq": "groq", "gw-mistral": "mistral"}
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"


@pytest.fixture
def gateway(clock: Clock) -> Gateway:
    s = settings(
        providers={name: {"api_key": secret} for name, secret in SECRETS.items()},
        models=[model(m, p) for m, p in MODELS.items()] + [model("gw-embed", "gemini", mode="embedding")],
        aliases={"fast": "gw-gemini", "smart": "gw-openai"},
        fallbacks={"gw-openai": ["gw-openai-backup"]},
        strategy="none",  # only explicit chains: catalog models never get in the way
    )
    return make_gateway(s, clock)


def make_gateway(s: Settings, clock: Any) -> Gateway:
    return Gateway(Runtime(s, clock=clock))


def start(gw: Gateway, path: str, headers: dict[str, str] | None = None) -> Exchange:
    """An exchange that has seen the request headers of a POST to `path`."""
    ex = Exchange(gw)
    assert ex.request_headers({":method": "POST", ":path": path, **(headers or {})},
                              end_of_stream=False) == ASKS_FOR_THE_ANSWER
    return ex


def outcome(gw: Gateway, path: str, raw: bytes, headers: dict[str, str] | None = None) -> Mutate | Reply:
    return asyncio.run(start(gw, path, headers).request_body(raw))


def routed(gw: Gateway, path: str, raw: bytes, headers: dict[str, str] | None = None) -> Exchange:
    ex = start(gw, path, headers)
    action = asyncio.run(ex.request_body(raw))
    assert isinstance(action, Mutate), action
    assert ex.forward is not None and action.clear_route_cache
    # The request's account goes with it (the relay's usage record needs it): set once, never removed.
    assert ACCOUNT_HEADER in action.set_headers and ACCOUNT_HEADER not in action.remove_headers
    assert (action.set_headers, action.remove_headers, action.body) == \
        (ex.forward.set_headers, ex.forward.remove_headers, ex.forward.body)
    return ex


def respond(ex: Exchange, status: int, headers: dict[str, str] | None = None) -> Block | None:
    """What Envoy's access-log entry for the attempt teaches: it carries the attempt header the attempt went with."""
    assert ex.forward is not None
    gw = ex._gateway
    return learn_attempt(gw.runtime, gw.secrets, ex.forward.set_headers[ATTEMPT_HEADER], status, headers or {}, "rid")


def body(model_id: str, **extra: Any) -> bytes:
    return json.dumps({"model": model_id, "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


def forward(gw: Gateway, path: str, raw: bytes, headers: dict[str, str] | None = None) -> Forward:
    ex = routed(gw, path, raw, headers)
    assert ex.forward is not None
    return ex.forward


def reply_json(reply: Reply | Mutate | Continue | None) -> dict[str, Any]:
    assert isinstance(reply, Reply), reply
    return json.loads(reply.body)


# ---------------------------------------------------------------- request headers

@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/v1/models", 405), ("DELETE", "/v1/models/gw-openai", 405), ("GET", "/v1/models", 404),
])
def test_models_paths_are_not_the_processors(gateway, method, path, status):
    """Envoy routes GET /v1/models… to the Models service; whatever reaches ext_proc there is refused."""
    reply = Exchange(gateway).request_headers({":method": method, ":path": path}, end_of_stream=True)
    assert isinstance(reply, Reply) and reply.status == status
    assert reply_json(reply)["error"]["code"] in ("method_not_allowed", "unknown_endpoint")


@pytest.mark.parametrize(("path", "check"), [
    ("/v1/nothing", lambda d: d["error"]["code"] == "unknown_endpoint"),
    ("/v1/messages/batches", lambda d: d["type"] == "error" and d["error"]["type"] == "not_found_error"),
    ("/v1beta/files", lambda d: d["error"]["code"] == 404 and d["error"]["status"] == "NOT_FOUND"),
])
def test_unknown_path_is_404_in_the_api_envelope(gateway, path, check):
    reply = Exchange(gateway).request_headers({":method": "POST", ":path": path}, end_of_stream=False)
    assert reply.status == 404
    assert check(reply_json(reply))


@pytest.mark.parametrize(("method", "path"), [("GET", CHAT), ("PUT", "/v1/embeddings"), ("GET", MESSAGES),
                                              ("DELETE", "/v1beta/models/gw-gemini:generateContent")])
def test_wrong_method_is_405(gateway, method, path):
    reply = Exchange(gateway).request_headers({":method": method, ":path": path}, end_of_stream=True)
    assert reply.status == 405
    assert reply.error is not None and reply.error.kind == "method_not_allowed"


def test_post_without_body_is_400(gateway):
    reply = Exchange(gateway).request_headers({":method": "POST", ":path": CHAT}, end_of_stream=True)
    assert reply.status == 400
    assert reply_json(reply)["error"]["code"] == "invalid_request"


def test_post_with_body_waits_for_it(gateway):
    assert Exchange(gateway).request_headers({":method": "POST", ":path": CHAT},
                                              end_of_stream=False) == ASKS_FOR_THE_ANSWER


# ---------------------------------------------------------------- request body: forwarding

@pytest.mark.parametrize(("path", "raw", "provider", "auth", "upstream_path"), [
    (CHAT, body("gw-openai"), "openai", ("authorization", "Bearer sk-openai-test"), None),
    (MESSAGES, body("gw-claude", max_tokens=5), "anthropic", ("x-api-key", "sk-anthropic-test"), None),
    (CHAT, body("gw-claude"), "anthropic", ("authorization", "Bearer sk-anthropic-test"), None),
    ("/v1beta/models/gw-gemini:generateContent", b'{"contents": []}', "gemini",
     ("x-goog-api-key", "sk-gemini-test"), None),
    (CHAT, body("gw-gemini"), "gemini", ("authorization", "Bearer sk-gemini-test"),
     "/v1beta/openai/chat/completions"),
    ("/v1/embeddings", b'{"model": "gw-embed", "input": "hi"}', "gemini",
     ("authorization", "Bearer sk-gemini-test"), "/v1beta/openai/embeddings"),
    (CHAT, body("gw-groq"), "groq", ("authorization", "Bearer sk-groq-test"), "/openai/v1/chat/completions"),
    (CHAT + "?trace=1", body("gw-groq"), "groq", ("authorization", "Bearer sk-groq-test"),
     "/openai/v1/chat/completions?trace=1"),
    ("/v1beta/models/fast:streamGenerateContent?alt=sse", b'{"contents": []}', "gemini",
     ("x-goog-api-key", "sk-gemini-test"), "/v1beta/models/gw-gemini:streamGenerateContent?alt=sse"),
])
def test_forward_routes_and_authenticates(gateway, path, raw, provider, auth, upstream_path):
    fwd = forward(gateway, path, raw)
    headers = fwd.set_headers
    assert headers[PROVIDER_HEADER] == provider == fwd.decision.provider.name
    assert headers[MODEL_HEADER] == fwd.decision.model.id
    auth_name, auth_value = auth
    assert headers[auth_name] == auth_value
    assert headers.get(":path") == upstream_path
    # every other place a client may put a credential is stripped; ours is set, not removed
    # a client's own copies of these go too
    steering = {*INTERNAL_HEADERS, LOGIN_HEADER, STREAM_HEADER, ACCOUNT_HEADER, UPSTREAM_API_HEADER, *RELAY_HEADERS,
                *ENVOY_REQUEST_HEADERS}
    assert set(fwd.remove_headers) - steering == set(CLIENT_CREDENTIAL_HEADERS) - {auth_name}
    assert steering - set(fwd.remove_headers) <= set(headers)  # what is not removed is set by the gateway
    assert not (set(CLIENT_CREDENTIAL_HEADERS) - {auth_name}) & set(headers)


def test_provider_default_headers(gateway):
    """Envoy's ext_proc ignores ADD_IF_ABSENT, so the gateway only sets a default the client did not send."""
    claude = forward(gateway, MESSAGES, body("gw-claude"))
    providers = gateway.runtime.current.settings.providers
    assert claude.set_headers["anthropic-version"] == providers["anthropic"].headers["anthropic-version"]
    own = forward(gateway, MESSAGES, body("gw-claude"), {"anthropic-version": "2099-01-01"})
    assert "anthropic-version" not in own.set_headers  # the client's own wins
    assert "anthropic-version" not in forward(gateway, CHAT, body("gw-openai")).set_headers


@pytest.mark.parametrize(("path", "requested", "reason"), [
    (CHAT, "gw-openai", "direct"),
    (MESSAGES, "gw-claude", "direct"),
])
def test_body_is_untouched_when_the_model_does_not_change(gateway, path, requested, reason):
    raw = body(requested)
    fwd = forward(gateway, path, raw, {"content-type": "application/json", "content-length": str(len(raw))})
    assert fwd.body is None
    assert "content-length" not in fwd.set_headers and "content-type" not in fwd.set_headers
    assert fwd.set_headers[ROUTE_HEADER] == reason


def test_an_untouched_body_sent_without_a_length_goes_with_one(gateway):
    """Sent chunked, or inflated by Envoy's decompressor: the body is whole here, so the provider gets its length."""
    raw = body("gw-openai")
    fwd = forward(gateway, CHAT, raw, {"content-type": "application/json"})
    assert fwd.body is None and fwd.set_headers["content-length"] == str(len(raw))


@pytest.mark.parametrize("content_type", [None, "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_json_body_under_another_content_type_reaches_the_provider_as_json(gateway, content_type):
    headers = {"content-type": content_type} if content_type else {}
    fwd = forward(gateway, CHAT, body("gw-openai"), headers)
    assert fwd.set_headers["content-type"] == "application/json"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "APPLICATION/JSON", "application/vnd.api+json"])
def test_a_json_content_type_is_left_as_the_client_sent_it(gateway, content_type):
    fwd = forward(gateway, CHAT, body("gw-openai"), {"content-type": content_type})
    assert "content-type" not in fwd.set_headers


@pytest.mark.parametrize(("requested", "served", "reason"), [
    ("smart", "gw-openai", "alias"),
    ("openai/gw-openai", "gw-openai", "direct"),
])
def test_body_is_rewritten_when_the_model_changes(gateway, requested, served, reason):
    fwd = forward(gateway, CHAT, body(requested, temperature=0.5))
    assert fwd.body is not None
    doc = json.loads(fwd.body)
    assert doc == {"model": served, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    assert fwd.set_headers["content-length"] == str(len(fwd.body))
    assert fwd.set_headers[ROUTE_HEADER] == reason


def test_gemini_alias_rewrites_the_path_not_the_body(gateway):
    fwd = forward(gateway, "/v1beta/models/fast:generateContent", b'{"contents": []}',
                  {"content-type": "application/json", "content-length": "16"})
    assert fwd.body is None
    assert fwd.set_headers[":path"] == "/v1beta/models/gw-gemini:generateContent"
    assert "content-length" not in fwd.set_headers


@pytest.mark.parametrize(("path", "raw", "status", "check"), [
    (CHAT, body("no-such-model"), 404, lambda d: d["error"]["code"] == "model_not_found"),
    (MESSAGES, body("no-such-model"), 404, lambda d: d["error"]["type"] == "not_found_error"),
    ("/v1beta/models/no-such:generateContent", b"{}", 404, lambda d: d["error"]["status"] == "NOT_FOUND"),
    (CHAT, b"{oops", 400, lambda d: d["error"]["code"] == "invalid_json"),
    (CHAT, body("gw-mistral"), 503, lambda d: "MISTRAL_API_KEY" in d["error"]["message"]),
])
def test_refusals_are_replies_in_the_client_format(gateway, path, raw, status, check):
    reply = outcome(gateway, path, raw)
    assert isinstance(reply, Reply) and reply.status == status
    assert check(reply_json(reply))


@pytest.mark.parametrize(("path", "raw", "check"), [
    (MESSAGES, body("gw-openai"), lambda d: d["error"]["type"] == "invalid_request_error"),
    ("/v1/responses", b'{"model": "gw-gemini", "input": "hi"}', lambda d: d["error"]["code"] == "unsupported_api"),
])
def test_without_translation_another_apis_model_is_refused_in_the_client_format(clock, path, raw, check):
    s = settings(providers={name: {"api_key": secret} for name, secret in SECRETS.items()},
                 models=[model(m, p) for m, p in MODELS.items()], strategy="none", translation=False)
    reply = outcome(make_gateway(s, clock), path, raw)
    assert isinstance(reply, Reply) and reply.status == 400 and check(reply_json(reply))


def test_with_translation_another_apis_model_is_planned_and_left_to_its_attempt_to_translate(gateway):
    action = outcome(gateway, MESSAGES, body("gw-openai"))
    assert isinstance(action, Mutate) and action.set_headers[PROVIDER_HEADER] == "openai"
    assert "x-extproc-handled" not in action.set_headers  # the attempt's own processor builds it, translated
    # A conversation the provider keeps cannot be rebuilt for another API: never sent where it would fail.
    bound = outcome(gateway, "/v1/responses", b'{"model": "gw-claude", "input": "hi", "previous_response_id": "r"}')
    assert isinstance(bound, Reply) and bound.status == 400
    assert reply_json(bound)["error"]["code"] == "unsupported_api"
    cannot = outcome(gateway, MESSAGES, b'{"model": "gw-openai", "max_tokens": 5, "messages": [], '
                                        b'"tools": [{"type": "web_search_20250305", "name": "web_search"}]}')
    assert isinstance(cannot, Reply) and cannot.status == 400 and cannot.error is not None
    assert cannot.error.kind == "untranslatable" and "web_search" in reply_json(cannot)["error"]["message"]


# ---------------------------------------------------------------- learning (from the attempt's access-log entry)

def test_429_with_retry_after_then_next_request_falls_back(gateway, clock):
    block = respond(routed(gateway, CHAT, body("gw-openai")), 429, {"retry-after": "30"})
    assert block is not None and block.until == T + 30

    clock.now += 10
    second = forward(gateway, CHAT, body("gw-openai"))
    assert second.set_headers[MODEL_HEADER] == "gw-openai-backup"
    assert second.set_headers[ROUTE_HEADER] == "fallback:chain"
    assert json.loads(second.body)["model"] == "gw-openai-backup"

    clock.now += 20
    assert forward(gateway, CHAT, body("gw-openai")).set_headers[MODEL_HEADER] == "gw-openai"


def test_everything_cooling_down_is_503_with_retry_after(gateway, clock):
    for _ in range(2):
        respond(routed(gateway, CHAT, body("gw-openai")), 429, {"retry-after-ms": "4500"})
    reply = outcome(gateway, CHAT, body("gw-openai"))
    assert isinstance(reply, Reply) and reply.status == 503
    assert reply.headers["retry-after"] == "5"
    assert reply_json(reply)["error"]["type"] == "service_unavailable_error"


def test_success_response_causes_no_block(gateway):
    assert respond(routed(gateway, CHAT, body("gw-openai")), 200, {"retry-after": "30"}) is None
    assert forward(gateway, CHAT, body("gw-openai")).set_headers[MODEL_HEADER] == "gw-openai"


def test_rejected_key_is_suspended_across_models(gateway):
    respond(routed(gateway, CHAT, body("gw-openai")), 401)
    reply = outcome(gateway, CHAT, body("gw-openai"))  # the backup shares the only openai key
    assert isinstance(reply, Reply) and reply.status == 503


def test_round_robin_over_keys():
    s = settings(providers={"openai": {"api_keys": ["k1", "k2"]}}, models=[model("m", "openai")])
    gw = make_gateway(s, lambda: T)
    auth = [forward(gw, CHAT, body("m")).set_headers["authorization"] for _ in range(4)]
    assert auth == ["Bearer k1", "Bearer k2", "Bearer k1", "Bearer k2"]


# ---------------------------------------------------------------- parse_retry_after

NOW_DT = dt.datetime.fromtimestamp(T, dt.UTC)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "12"}, 12.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after": "-5"}, 0.0),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ({"retry-after": format_datetime(NOW_DT + dt.timedelta(seconds=30), usegmt=True)}, 30.0),
    ({"retry-after": format_datetime(NOW_DT - dt.timedelta(seconds=30), usegmt=True)}, 0.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": ""}, None),
    ({"retry-after-ms": "soon"}, None),
    ({}, None),
])
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, T) == expected


# ---------------------------------------------------------------- bugs

def test_gemini_query_key_is_not_forwarded(gateway):
    fwd = forward(gateway, "/v1beta/models/gw-gemini:streamGenerateContent?alt=sse&key=client-secret",
                  b'{"contents": []}')
    upstream = fwd.set_headers.get(":path", "/v1beta/models/gw-gemini:streamGenerateContent?alt=sse&key=client-secret")
    assert "client-secret" not in upstream
    assert "alt=sse" in upstream


def test_gemini_batch_embed_alias_rewrites_inner_models():
    s = settings(providers={"gemini": {"api_key": "k"}}, models=[model("emb", "gemini", mode="embedding")],
                 aliases={"vec": "emb"})
    raw = json.dumps({"requests": [{"model": "models/vec", "content": {"parts": [{"text": "a"}]}}]}).encode()
    fwd = forward(make_gateway(s, lambda: T), "/v1beta/models/vec:batchEmbedContents", raw)
    assert fwd.set_headers[":path"] == "/v1beta/models/emb:batchEmbedContents"
    assert fwd.body is not None
    assert [r["model"] for r in json.loads(fwd.body)["requests"]] == ["models/emb"]


def test_a_404_for_a_made_up_model_or_the_legacy_endpoint_suspends_nothing(gateway, clock):
    """Clients choose these; a 404 there is their mistake and must not take a key's model out of service."""
    assert respond(routed(gateway, CHAT, body("openai/not-a-real-model")), 404) is None
    legacy = routed(gateway, "/v1/completions", json.dumps({"model": "gw-openai", "prompt": "hi"}).encode())
    assert respond(legacy, 404) is None
    assert forward(gateway, CHAT, body("gw-openai")).decision.model.id == "gw-openai"
    block = respond(routed(gateway, CHAT, body("gw-openai")), 404)
    assert block is not None and block.kind == "suspended"  # on a real endpoint it is the model's absence


def test_retry_after_is_capped_at_a_day():
    assert parse_retry_after({"retry-after": "1e12"}, T) == 86400
    assert parse_retry_after({"retry-after": "inf"}, T) == 86400
    assert parse_retry_after({"retry-after": "nan"}, T) is None


def test_client_account_headers_are_stripped(gateway):
    headers = set(forward(gateway, CHAT, body("gw-openai")).remove_headers)
    assert {"openai-organization", "openai-project"} <= headers


# ---------------------------------------------------------------- the exchange's own rules

class KeysOnly:
    """A secret source for API keys: nothing to refresh or confirm; subclasses decide what `secret` does."""

    async def secret(self, credential: Any) -> str:
        return str(credential.secret)

    def invalidate(self, credential: Any) -> bool:
        return False

    def confirm(self, credential: Any) -> None:
        pass

    def awaits_confirmation(self, credential: Any) -> bool:
        return False


class FailingSecrets(KeysOnly):
    """A secret source with a bug in it: the exchange must answer 500, never reset or forward."""

    async def secret(self, credential: Any) -> str:
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent", "countTokens", "embedContent",
                                    "batchEmbedContents"])
def test_a_failure_inside_the_processor_answers_every_gemini_method_in_geminis_envelope(clock, method):
    s = settings(providers={"gemini": {"api_key": "k"}},
                 models=[model("gw-gemini", "gemini"), model("gw-embed", "gemini", mode="embedding")])
    gw = Gateway(Runtime(s, clock=clock), secrets=FailingSecrets())
    name = "gw-embed" if "mbed" in method else "gw-gemini"
    raw = b'{"requests": []}' if method == "batchEmbedContents" else b'{"contents": []}'
    reply = outcome(gw, f"/v1beta/models/{name}:{method}", raw)
    assert isinstance(reply, Reply) and reply.status == 500
    assert reply_json(reply)["error"] == {"code": 500, "message": "The gateway failed to route this request.",
                                          "status": "INTERNAL"}


def test_a_rewritten_body_is_serialised_once(gateway, monkeypatch):
    import orjson
    calls = []
    real = orjson.dumps
    monkeypatch.setattr(orjson, "dumps", lambda doc: calls.append(doc) or real(doc))
    fwd = forward(gateway, CHAT, body("smart"))
    assert fwd.body is not None and json.loads(fwd.body)["model"] == "gw-openai"
    assert len([doc for doc in calls if "messages" in doc]) == 1  # the body; the other is the failover plan


def test_large_bodies_are_parsed_and_built_off_the_event_loop(gateway, monkeypatch):
    import threading

    import extproc.request.exchange
    threads = []
    real = extproc.request.exchange.route_request

    def recording(*args: Any) -> Forward:
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(extproc.request.exchange, "route_request", recording)
    forward(gateway, CHAT, body("smart"))
    forward(gateway, CHAT, body("smart", padding="x" * (2 << 20)))
    assert threads[0] is threading.main_thread() and threads[1] is not threading.main_thread()


def test_learning_uses_the_snapshot_the_decision_came_from(clock):
    """A model discovery dropped while the request was in flight is still the model that answered 404."""
    from extproc.discovery.parse import Listed
    s = settings(providers={"openai": {"api_key": "k"}}, models=[model("gw-openai", "openai")])
    runtime = Runtime(s, clock=clock)
    runtime.publish_discovered({"openai": (Listed("fresh"),)})
    gw = Gateway(runtime)
    ex = routed(gw, CHAT, body("fresh"))
    runtime.publish_discovered({})  # the next snapshot no longer lists it
    block = respond(ex, 404)
    assert block is not None and block.kind == "suspended"
    assert runtime.health.blocked("openai:key1", "fresh", clock.now, "chat") is not None


def test_an_unavailable_secret_fails_closed_for_that_credential_and_the_next_one_serves(clock):
    s = settings(providers={"openai": {"api_keys": ["k1", "k2"]}}, models=[model("m", "openai")])

    class FirstRefused(KeysOnly):
        async def secret(self, credential: Any) -> str:
            if credential.id == "openai:key1":
                from extproc.core.errors import CredentialUnavailable
                raise CredentialUnavailable("token endpoint down", permanent=False)
            return str(credential.secret)

    gw = Gateway(Runtime(s, clock=clock), secrets=FirstRefused())
    assert forward(gw, CHAT, body("m")).set_headers["authorization"] == "Bearer k2"
    block = gw.runtime.health.blocked("openai:key1", "m", clock.now)
    assert block is not None and block.reason == "token endpoint down"


def test_only_a_success_that_is_news_asks_the_access_log_for_its_entry(gateway, clock):
    from extproc.core.headers import LEARN_HEADER
    assert LEARN_HEADER not in forward(gateway, CHAT, body("gw-openai")).set_headers  # healthy: no entry at all
    respond(routed(gateway, CHAT, body("gw-openai")), 429, {"retry-after": "5"})
    clock.now += 6  # the cooldown is over; its record is not: the next success must clear it
    recovering = routed(gateway, CHAT, body("gw-openai"))
    assert recovering.forward is not None and recovering.forward.set_headers[LEARN_HEADER] == "1"
    assert respond(recovering, 200) is None
    assert LEARN_HEADER not in forward(gateway, CHAT, body("gw-openai")).set_headers


def test_round_robin_spreads_over_three_keys_and_skips_the_cooling_one(clock):
    gw = make_gateway(settings(providers={"openai": {"api_keys": ["k1", "k2", "k3"]}}, models=[model("m", "openai")]),
                      clock)
    respond(routed(gw, CHAT, body("m")), 429, {"retry-after": "60"})  # k1 cools (turn 0)
    auth = [forward(gw, CHAT, body("m")).set_headers["authorization"] for _ in range(4)]
    assert sorted(auth) == ["Bearer k2", "Bearer k2", "Bearer k3", "Bearer k3"]  # the healthy two, in turn
    assert auth[0] != auth[1] and auth[1] != auth[2]


def test_fill_first_uses_the_first_healthy_key_until_it_cools(clock):
    s = settings(providers={"openai": {"api_keys": ["k1", "k2"], "rotation": "fill-first"}},
                 models=[model("m", "openai")])
    gw = make_gateway(s, clock)
    assert {forward(gw, CHAT, body("m")).set_headers["authorization"] for _ in range(3)} == {"Bearer k1"}
    respond(routed(gw, CHAT, body("m")), 429, {"retry-after": "60"})
    assert {forward(gw, CHAT, body("m")).set_headers["authorization"] for _ in range(3)} == {"Bearer k2"}
    clock.now += 61
    assert forward(gw, CHAT, body("m")).set_headers["authorization"] == "Bearer k1"


def test_rotation_is_validated_with_the_key():
    from extproc.core.errors import ConfigError
    with pytest.raises(ConfigError, match=r"providers\.openai\.rotation: 'random' is not one of round-robin"):
        settings(providers={"openai": {"rotation": "random"}})


def test_a_client_cannot_forge_the_headers_that_steer_attempts(clock):
    """A forged x-extproc-handled would skip the attempt's own processor: the request would leave unbuilt."""
    ca = {"base_url": "https://ca.example.com", "apis": {"gemini": ""}, "transform": "codeassist", "api_key": "k"}
    gw = make_gateway(settings(providers={"ca": ca}, models=[model("ca-model", "ca")]), clock)
    forged = {"x-extproc-handled": "1", "x-extproc-learn": "1", "x-envoy-retry-on": "4xx", "x-envoy-max-retries": "9"}
    fwd = forward(gw, "/v1beta/models/ca-model:generateContent", b'{"contents": []}', forged)
    assert not fwd.handled
    assert {"x-extproc-handled", "x-extproc-learn"} <= set(fwd.remove_headers)
    assert fwd.set_headers["x-envoy-max-retries"] == "0"  # ours overwrite the client's
    assert fwd.set_headers["x-envoy-retry-on"] == "retriable-status-codes"
