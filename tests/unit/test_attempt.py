"""Same-request failover without Envoy: the router-level plan, and each later attempt built from it by
an AttemptExchange that shares nothing with the router-level one (as in another processor process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from extproc.core.headers import API_HEADER, ATTEMPT_HEADER, HANDLED_HEADER
from extproc.fast.routes import fast_route, rendered
from extproc.request.actions import CONTINUE, Mutate, Reply
from extproc.request.attempt import AttemptExchange
from extproc.request.exchange import Exchange
from extproc.request.gateway import Gateway
from extproc.request.plan import ENDPOINTS_KEY, LB_NAMESPACE, PLAN_NAMESPACE, REFUSED_ROUTE, Plan, endpoint_address
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import ASKS_FOR_THE_ANSWER, model, settings

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"


def gateway_for(clock: Clock, **raw: Any) -> Gateway:
    return Gateway(Runtime(settings(**raw), clock=clock))


@pytest.fixture
def gateway(clock: Clock) -> Gateway:
    return gateway_for(clock,
                       providers={"anthropic": {"api_keys": ["an-1", "an-2"]}, "openai": {"api_key": "oa-1"}},
                       models=[model("claude-x", "anthropic"), model("gpt-x", "openai")],
                       fallbacks={"claude-x": ["gpt-x"]}, strategy="none")


def route(gw: Gateway, path: str, doc: dict[str, Any], headers: dict[str, str] | None = None) -> Mutate:
    ex = Exchange(gw)
    assert ex.request_headers({":method": "POST", ":path": path, **(headers or {})}, False) == ASKS_FOR_THE_ANSWER
    action = asyncio.run(ex.request_body(json.dumps(doc).encode()))
    assert isinstance(action, Mutate), action
    return action


def shared_headers(client: dict[str, str], *mutations: Mutate) -> dict[str, str]:
    """The header map a later attempt sees: the client's, as the router-level answer and every earlier
    attempt's processor left it (Envoy shares one map between the attempts; removals apply first)."""
    seen = dict(client)
    for mutation in mutations:
        seen = {k: v for k, v in seen.items() if k not in mutation.remove_headers}
        seen.update(mutation.set_headers)
    return seen


def attempt(gw: Gateway, first: Mutate, n: int, host: str | None, headers: dict[str, str],
            body: bytes) -> tuple[AttemptExchange, Mutate | Reply]:
    ex = AttemptExchange(gw)
    plan = first.dynamic_metadata[PLAN_NAMESPACE]["plan"]
    started = ex.request_headers({**headers, "x-envoy-attempt-count": str(n)}, plan, host)
    if isinstance(started, Reply):
        return ex, started
    assert started.body_mode == "buffered"  # the attempt asks for the body: it rewrites it
    return ex, asyncio.run(ex.request_body(body))


CLIENT = {":method": "POST", ":path": MESSAGES, "anthropic-beta": "tools-1", "x-api-key": "client-own-key",
          "x-request-id": "rid-1"}
DOC = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_the_plan_names_every_attempt_and_caps_envoys_retries(gateway):
    first = route(gateway, CHAT, {"model": "claude-x", "messages": []})
    # the same model on its other key first, then the explicit fallback on another provider
    assert first.dynamic_metadata[LB_NAMESPACE][ENDPOINTS_KEY] == ",".join(
        endpoint_address(p) for p in ("anthropic", "anthropic", "openai"))
    plan = json.loads(first.dynamic_metadata[PLAN_NAMESPACE]["plan"])
    assert [c[2:4] for c in plan["candidates"]] == [["claude-x", "anthropic:key1"], ["claude-x", "anthropic:key2"],
                                                    ["gpt-x", "openai:key1"]]
    assert first.set_headers["x-envoy-max-retries"] == "2"
    assert first.set_headers[HANDLED_HEADER] == "1" and first.set_headers[API_HEADER] == "openai"
    assert first.set_headers[ATTEMPT_HEADER].startswith("1 anthropic:key1 anthropic/claude-x chat ")
    assert "an-" not in first.dynamic_metadata[PLAN_NAMESPACE]["plan"]  # ids only, never a secret


def test_each_request_tells_envoy_which_statuses_retry_and_how_long_a_first_byte_may_take(clock):
    gw = gateway_for(clock, providers={"anthropic": {"api_keys": ["a", "b"]}}, models=[model("m", "anthropic")],
                     failover={"statuses": [429, 418], "first_byte_timeout": 2.5})
    headers = route(gw, CHAT, {"model": "m", "messages": []}).set_headers
    assert headers["x-envoy-retry-on"] == "retriable-status-codes"
    assert headers["x-envoy-retriable-status-codes"] == "429,418"
    assert headers["x-envoy-upstream-rq-per-try-timeout-ms"] == "2500"


def test_failover_attempts_are_limited_by_config(clock):
    gw = gateway_for(clock, providers={"anthropic": {"api_keys": ["a", "b"]}}, models=[model("m", "anthropic")],
                     failover={"attempts": 1})
    first = route(gw, CHAT, {"model": "m", "messages": []})
    assert first.set_headers["x-envoy-max-retries"] == "0"
    assert first.set_headers["x-envoy-retriable-status-codes"] == "429,500,502,503,504,529"
    assert first.dynamic_metadata[LB_NAMESPACE][ENDPOINTS_KEY] == endpoint_address("anthropic")


def test_a_later_attempt_undoes_what_the_first_set_and_goes_out_with_its_own_provider_model_and_key(gateway):
    client = {":method": "POST", ":path": CHAT, "authorization": "Bearer client", "x-request-id": "rid-2"}
    first = route(gateway, CHAT, {"model": "claude-x", "messages": []}, client)
    assert first.set_headers["authorization"] == "Bearer an-1" and "anthropic-version" in first.set_headers
    left = first.body or json.dumps({"model": "claude-x", "messages": []}).encode()
    ex, third = attempt(gateway, first, 3, "openai", shared_headers(client, first), left)
    assert isinstance(third, Mutate), third
    assert third.set_headers["authorization"] == "Bearer oa-1"
    assert "anthropic-version" in third.remove_headers  # the first attempt's provider default, undone
    assert json.loads(third.body or b"")["model"] == "gpt-x"
    assert third.set_headers["x-extproc-provider"] == "openai" and third.set_headers["x-extproc-route"] == \
        "fallback:chain"
    assert ex.decision is not None and ex.decision.credential.id == "openai:key1"


def test_a_later_attempt_on_another_key_of_the_same_provider(gateway):
    first = route(gateway, MESSAGES, DOC, CLIENT)
    seen = shared_headers(CLIENT, first)
    ex, second = attempt(gateway, first, 2, "anthropic", seen, json.dumps(DOC).encode())
    assert isinstance(second, Mutate), second
    assert second.set_headers["x-api-key"] == "an-2"
    assert "anthropic-beta" not in second.set_headers and "anthropic-beta" not in second.remove_headers  # client's
    assert second.set_headers[ATTEMPT_HEADER].startswith("2 anthropic:key2 anthropic/claude-x messages ")
    assert "authorization" in second.remove_headers
    assert ex.response_headers({":status": "200"}, False) is CONTINUE  # nothing to reshape


def test_an_attempt_with_another_model_rewrites_the_body_the_first_attempt_left(clock):
    gw = gateway_for(clock, providers={"openai": {"api_key": "oa"}, "groq": {"api_key": "gq"}},
                     models=[model("a", "openai"), model("b", "groq")], fallbacks={"a": ["b"]}, strategy="none")
    client = {":method": "POST", ":path": CHAT, "authorization": "Bearer client"}
    first = route(gw, CHAT, {"model": "a", "messages": [], "temperature": 0.5}, client)
    left = first.body or json.dumps({"model": "a", "messages": [], "temperature": 0.5}).encode()
    _, second = attempt(gw, first, 2, "groq", shared_headers(client, first), left)
    assert isinstance(second, Mutate), second
    assert json.loads(second.body or b"") == {"model": "b", "messages": [], "temperature": 0.5}
    assert second.set_headers["content-length"] == str(len(second.body or b""))
    assert second.set_headers[":path"] == "/openai/v1/chat/completions"  # absolute: the map is shared
    assert second.set_headers["authorization"] == "Bearer gq"


def refused(action: Mutate | Reply) -> bool:
    """Sent on with no credential and a provider header no provider has: the internal listener answers 503,
    which Envoy retries on the next candidate (a reply from the filter itself would reach the client)."""
    return isinstance(action, Mutate) and action.set_headers == {"x-extproc-provider": REFUSED_ROUTE} \
        and {"authorization", "x-api-key", "x-goog-api-key", ATTEMPT_HEADER} <= set(action.remove_headers)


@pytest.mark.parametrize(("n", "host"), [(4, "openai"), (2, "openai"), (2, None)])
def test_an_attempt_past_the_plan_or_at_another_endpoint_goes_nowhere(gateway, n, host):
    first = route(gateway, CHAT, {"model": "claude-x", "messages": []})
    ex = AttemptExchange(gateway)
    plan = first.dynamic_metadata[PLAN_NAMESPACE]["plan"]
    assert refused(ex.request_headers({**shared_headers({":path": CHAT}, first), "x-envoy-attempt-count": str(n)},
                                      plan, host))


@pytest.mark.parametrize("n", [0, -1, -7])
def test_an_attempt_count_below_one_goes_nowhere_whatever_the_endpoint(gateway, n):
    """Envoy counts attempts from 1; a count below (never Envoy's own) names no candidate, even read from the end
    of the plan, and does not break the stream."""
    first = route(gateway, CHAT, {"model": "claude-x", "messages": []})
    plan = first.dynamic_metadata[PLAN_NAMESPACE]["plan"]
    for host in {c.route for c in Plan.from_metadata(plan).candidates}:
        ex = AttemptExchange(gateway)
        assert refused(ex.request_headers({**shared_headers({":path": CHAT}, first), "x-envoy-attempt-count": str(n)},
                                          plan, host)), host


def test_an_attempt_without_a_plan_fails_closed(gateway):
    assert refused(AttemptExchange(gateway).request_headers({":path": CHAT, "x-envoy-attempt-count": "1"}, None,
                                                            "openai"))


CODE_ASSIST = {"base_url": "https://ca.example.com", "apis": {"gemini": ""}, "transform": "codeassist",
               "api_key": "ca-key"}


@pytest.fixture
def codeassist(clock: Clock) -> Gateway:
    return gateway_for(clock, providers={"ca": CODE_ASSIST}, models=[model("ca-model", "ca")])


def codeassist_attempt(gw: Gateway, path: str) -> tuple[AttemptExchange, Mutate]:
    client = {":method": "POST", ":path": path}
    first = route(gw, path, {"contents": []}, client)
    assert HANDLED_HEADER not in first.set_headers and first.body is None  # a reshaped body is the attempt's own
    assert "x-goog-api-key" not in first.set_headers
    ex, built = attempt(gw, first, 1, "ca", shared_headers(client, first), b'{"contents": []}')
    assert isinstance(built, Mutate), built
    return ex, built


def test_codeassist_request_is_wrapped_by_its_attempt_and_its_buffered_answer_unwrapped(codeassist):
    ex, built = codeassist_attempt(codeassist, "/v1beta/models/ca-model:generateContent")
    assert built.set_headers[":path"] == "/v1internal:generateContent"
    assert json.loads(built.body or b"") == {"model": "ca-model", "request": {"contents": []}}
    assert built.set_headers["accept-encoding"] == "identity"
    action = ex.response_headers({":status": "200", "content-type": "application/json"}, end_of_stream=False)
    assert action == Mutate({"content-type": "application/json"}, ("content-length",), body_mode="buffered")
    answer = ex.response_body(b'{"response": {"candidates": [1]}, "traceId": "t"}', end_of_stream=True)
    assert isinstance(answer, Mutate) and json.loads(answer.body or b"") == {"candidates": [1]}


def test_codeassist_stream_is_unwrapped_per_event_across_chunks(codeassist):
    ex, built = codeassist_attempt(codeassist, "/v1beta/models/ca-model:streamGenerateContent?alt=sse")
    assert built.set_headers[":path"] == "/v1internal:streamGenerateContent?alt=sse"
    action = ex.response_headers({":status": "200", "content-type": "text/event-stream"}, end_of_stream=False)
    assert action == Mutate(remove_headers=("content-length",), body_mode="streamed")
    first = ex.response_body(b'data: {"response": {"n": 1}}\r\n\r\ndata: {"resp', end_of_stream=False)
    second = ex.response_body(b'onse": {"n": 2}}\r\n\r\n', end_of_stream=True)
    assert isinstance(first, Mutate) and first.body == b'data: {"n":1}\r\n\r\n'
    assert isinstance(second, Mutate) and second.body == b'data: {"n":2}\r\n\r\n'


def test_an_encoded_codeassist_answer_passes_untouched(codeassist):
    ex, _ = codeassist_attempt(codeassist, "/v1beta/models/ca-model:generateContent")
    assert ex.response_headers({":status": "200", "content-encoding": "gzip"}, end_of_stream=False) is CONTINUE
    assert ex.response_body(b"\x1f\x8b", end_of_stream=True) is CONTINUE


def test_the_clients_own_credential_never_reaches_a_later_attempt(clock):
    gw = gateway_for(clock, providers={
        "p1": {"base_url": "https://p1.example.com", "apis": {"openai": "/v1"}, "api_key": "k1"},
        "p2": {"base_url": "https://p2.example.com", "apis": {"openai": "/v1"}, "api_key": "k2", "auth": "x-api-key"}},
        models=[model("m1", "p1"), model("m2", "p2")], fallbacks={"m1": ["m2"]}, strategy="none")
    client = {":method": "POST", ":path": CHAT + "?key=CLIENT-SECRET", "authorization": "Bearer CLIENT-SECRET"}
    first = route(gw, CHAT + "?key=CLIENT-SECRET", {"model": "m1", "messages": []}, client)
    assert "CLIENT-SECRET" not in json.dumps(first.dynamic_metadata)  # not in the plan, not in its path
    left = first.body or json.dumps({"model": "m1", "messages": []}).encode()
    _, second = attempt(gw, first, 2, "p2", shared_headers(client, first), left)
    assert isinstance(second, Mutate), second
    assert second.set_headers["x-api-key"] == "k2" and "authorization" not in second.set_headers
    assert "authorization" in second.remove_headers  # the first attempt's bearer goes, and no one's comes back


def test_attempts_after_a_reshaped_first_attempt_keep_nothing_of_it(clock):
    """Code Assist first, then the Gemini API: the second attempt must not inherit the first's path,
    length or accept-encoding from the shared header map."""
    ca = {"base_url": "https://ca.example.com", "apis": {"gemini": ""}, "transform": "codeassist", "api_key": "ca"}
    gw = gateway_for(clock, providers={"ca": ca, "gemini": {"api_key": "ge"}},
                     models=[model("g-ca", "ca"), model("g-api", "gemini")], fallbacks={"g-ca": ["g-api"]},
                     strategy="none")
    path = "/v1beta/models/g-ca:generateContent"
    client = {":method": "POST", ":path": path}
    doc = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
    first = route(gw, path, json.loads(doc), client)
    _, one = attempt(gw, first, 1, "ca", shared_headers(client, first), doc)
    assert isinstance(one, Mutate) and one.set_headers[":path"] == "/v1internal:generateContent"
    _, two = attempt(gw, first, 2, "gemini", shared_headers(client, first, one), doc)
    assert isinstance(two, Mutate), two
    assert two.set_headers[":path"] == "/v1beta/models/g-api:generateContent"
    assert two.body is None and two.set_headers["content-length"] == str(len(doc))  # the client's body, as it came
    assert "accept-encoding" in two.remove_headers and two.set_headers["x-goog-api-key"] == "ge"
    assert "authorization" in two.remove_headers  # Code Assist's bearer


def test_an_attempt_refused_before_it_went_is_not_learned_against_the_previous_one(gateway):
    from extproc.request.learning import learn_attempt
    first = route(gateway, CHAT, {"model": "claude-x", "messages": []})
    header = first.set_headers[ATTEMPT_HEADER]  # what the shared map still says when attempt 2 is refused
    runtime = gateway.runtime
    assert learn_attempt(runtime, gateway.secrets, header, 503, {}, "rid", attempt_count=2) is None
    assert runtime.health.blocked("anthropic:key1", "claude-x", runtime.clock()) is None
    assert learn_attempt(runtime, gateway.secrets, header, 503, {}, "rid", attempt_count=1) is not None


def cloud(host: str, **invoke: Any) -> dict[str, Any]:
    """A provider of Claude on a cloud (an `invoke` call on the model's path)."""
    return {"base_url": f"https://{host}", "apis": {"anthropic": "/m"}, "api_key": host, "invoke": {
        "anthropic_version": "v-1", "whole": ":call", "stream": ":stream", **invoke}}


def test_each_cloud_attempt_gets_the_betas_it_serves_and_a_later_one_the_clients_own(clock):
    """Claude on a cloud that takes betas in the body, then on one that takes the header, then on Anthropic: each
    gets what it serves of the client's flags, and Anthropic all of them, as the client sent them."""
    gw = gateway_for(clock, providers={
        "in-body": cloud("body.example.com", betas="anthropic_beta",
                         accepted_betas=["interleaved-thinking-2025-05-14"]),
        "in-header": cloud("header.example.com", accepted_betas=["claude-code-20250219", "tool-search-tool-2025-10-19"],
                           renamed_betas={"advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"}),
        "anthropic": {"api_key": "an-1"}},
        models=[model("c-body", "in-body"), model("c-header", "in-header"), model("c-direct", "anthropic")],
        fallbacks={"c-body": ["c-header", "c-direct"]}, strategy="none")
    betas = "claude-code-20250219,oauth-2025-04-20,advanced-tool-use-2025-11-20"
    client = {":method": "POST", ":path": MESSAGES, "anthropic-beta": betas}
    doc = {**DOC, "model": "c-body"}
    raw = json.dumps(doc).encode()
    first = route(gw, MESSAGES, doc, client)
    _, one = attempt(gw, first, 1, "in-body", shared_headers(client, first), raw)
    assert isinstance(one, Mutate) and one.body is not None
    assert "anthropic-beta" in one.remove_headers and "anthropic_beta" not in json.loads(one.body)  # none it serves
    _, two = attempt(gw, first, 2, "in-header", shared_headers(client, first, one), raw)
    assert isinstance(two, Mutate)
    assert two.set_headers["anthropic-beta"] == "claude-code-20250219,tool-search-tool-2025-10-19"
    _, three = attempt(gw, first, 3, "anthropic", shared_headers(client, first, one, two), raw)
    assert isinstance(three, Mutate) and three.set_headers["anthropic-beta"] == betas
    assert "anthropic-beta" not in three.remove_headers


def test_a_fast_routes_later_attempt_on_a_cloud_gets_the_betas_it_serves_of_the_clients(clock):
    """A fast route is planned before any request: the client's flags are not in its plan, and its later attempt
    reads them from the request as it came, not as none."""
    gw = gateway_for(clock, providers={"anthropic": {"api_key": "an-1"},
                                       "in-body": cloud("body.example.com", betas="anthropic_beta",
                                                        accepted_betas=["context-1m-2025-08-07"])},
                     models=[model("c-direct", "anthropic"), model("c-body", "in-body")],
                     fallbacks={"c-direct": ["c-body"]}, strategy="none")
    snapshot = gw.runtime.current
    route = fast_route("messages", "c-direct", snapshot.registry, gw.runtime.health, clock(), snapshot.settings)
    assert route is not None and [c.model for c in route.plan.candidates] == ["c-direct", "c-body"]
    betas = "context-1m-2025-08-07,oauth-2025-04-20"
    shared = {":method": "POST", ":path": MESSAGES, "anthropic-beta": betas, "x-request-id": "rid-2",
              **{k: v.replace("%%", "%") for k, v in rendered(route).items()}, "x-envoy-attempt-count": "2"}
    ex = AttemptExchange(gw)
    assert isinstance(ex.request_headers(shared, None, "in-body"), Mutate)
    second = asyncio.run(ex.request_body(json.dumps({**DOC, "model": "c-direct"}).encode()))
    assert isinstance(second, Mutate) and second.body is not None, second
    assert json.loads(second.body)["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert "anthropic-beta" in second.remove_headers and "x-api-key" in second.remove_headers


def test_a_kept_client_value_a_client_forges_never_sets_our_headers_on_a_later_attempt(gateway):
    """Only a header a login joins its values to has a kept client value; one named after our own headers (the
    login to refresh on a 401, the relay's stream mark) is nothing to a later attempt."""
    client = {**CLIENT, "x-extproc-client-value-x-extproc-login": "some-login",
              "x-extproc-client-value-x-extproc-stream": "1", "x-extproc-client-value-x-api-key": "stolen"}
    first = route(gateway, MESSAGES, DOC, client)
    _, second = attempt(gateway, first, 2, "anthropic", shared_headers(client, first), json.dumps(DOC).encode())
    assert isinstance(second, Mutate), second
    assert second.set_headers["x-api-key"] == "an-2"  # the planned key, not the forged one
    assert {"x-extproc-login", "x-extproc-stream"} <= set(second.remove_headers)
    assert not {"x-extproc-login", "x-extproc-stream"} & set(second.set_headers)
