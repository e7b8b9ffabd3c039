"""A login's 401, retried on the same login with a refreshed token: the reauth exchange without Envoy, and the
Envoy config that runs it on a retry only."""

from __future__ import annotations

import asyncio
import json

import pytest

from extproc.bootstrap import build_bootstrap
from extproc.core.errors import CredentialUnavailable
from extproc.core.providers import AuthStyle
from extproc.core.settings import Credential
from extproc.request.actions import CONTINUE, Mutate, Reply
from extproc.request.gateway import Gateway
from extproc.request.reauth import ReauthExchange
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import model, settings

LOGIN = Credential(id="claude-1", provider="anthropic", account="claude-1", auth=AuthStyle.BEARER)


class Logins:
    """A secret source whose login's token is refreshed after a refusal (or cannot be)."""

    def __init__(self, refreshable: bool = True) -> None:
        self.refreshable = refreshable
        self.events: list[str] = []

    async def secret(self, credential: Credential) -> str:
        if not self.refreshable:
            raise CredentialUnavailable("refresh token revoked", permanent=True)
        return "fresh-token" if "invalidate" in self.events else "old-token"

    def invalidate(self, credential: Credential) -> bool:
        self.events.append("invalidate")
        return True

    def confirm(self, credential: Credential) -> None:
        self.events.append("confirm")

    def awaits_confirmation(self, credential: Credential) -> bool:
        return False


def gateway(clock: Clock, secrets: Logins) -> Gateway:
    runtime = Runtime(settings(providers={"anthropic": {"api_key": "k"}}, models=[model("c", "anthropic")]),
                      clock=clock)
    runtime.publish_logins((LOGIN,), {})
    return Gateway(runtime, secrets)


HEADERS = {":path": "/v1/messages", "x-extproc-api": "anthropic", "x-request-id": "rid-1",
           "authorization": "Bearer old-token"}


def test_the_retry_goes_with_a_refreshed_token_and_its_success_confirms_it(clock):
    secrets = Logins()
    ex = ReauthExchange(gateway(clock, secrets))
    action = asyncio.run(ex.request_headers(HEADERS, "claude-1"))
    assert isinstance(action, Mutate) and action.answer_headers
    assert action.set_headers == {"authorization": "Bearer fresh-token"}
    assert ex.response_headers({":status": "401"}) is CONTINUE and secrets.events == ["invalidate"]
    ex.response_headers({":status": "200"})
    assert secrets.events == ["invalidate", "confirm"]


@pytest.mark.parametrize("login, refreshable", [("claude-gone", True), ("", True), ("claude-1", False)])
def test_a_login_that_is_gone_or_cannot_refresh_answers_503_in_the_clients_envelope(clock, login, refreshable):
    gw = gateway(clock, Logins(refreshable))
    reply = asyncio.run(ReauthExchange(gw).request_headers(HEADERS, login))
    assert isinstance(reply, Reply) and reply.status == 503  # failover sends the request to its next candidate
    assert json.loads(reply.body)["type"] == "error" and "-token" not in reply.body.decode()
    assert ("claude-1" in gw.runtime.health.suspended_ids(clock())) is (not refreshable)


def test_envoy_retries_a_401_only_on_a_login_and_runs_the_reauth_filter_on_that_retry_only():
    boot = build_bootstrap(settings(providers={"anthropic": {"api_key": "k"}}, models=[model("c", "anthropic")]))
    listener = next(li for li in boot["static_resources"]["listeners"] if li["name"] == "provider_anthropic")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.header_to_metadata",
                                                         "envoy.filters.http.router"]
    login_stream, login_route, key_stream, key_route = hcm["route_config"]["virtual_hosts"][0]["routes"][:4]
    assert {"name": "x-extproc-login", "present_match": True} in login_route["match"]["headers"]
    for login in (login_route, login_stream):
        assert login["route"]["retry_policy"]["retriable_status_codes"] == [401]
    assert "retry_policy" not in key_route["route"] and "retry_policy" not in key_stream["route"]  # a key's 401 stays
    routes = (login_stream, login_route, key_stream, key_route)
    assert all("x-extproc-login" in r["request_headers_to_remove"] for r in routes)
    relay = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "relay")
    relay_filters = relay["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
    assert relay_filters[0]["name"] == "envoy.filters.http.match_delegate"  # a streamed retry is refreshed too
    cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "provider_anthropic")
    filters = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.match_delegate", "envoy.filters.http.header_mutation",
                                            "envoy.filters.http.upstream_codec"]
    skip = filters[0]["typed_config"]["xds_matcher"]["matcher_list"]["matchers"][0]["predicate"]
    assert skip["not_matcher"]["single_predicate"]["value_match"] == {"exact": "2"}  # a retry: the only one it runs on


def test_a_retry_whose_token_was_already_replaced_goes_with_the_new_one_without_a_second_refresh(clock):
    secrets = Logins()
    secrets.events.append("invalidate")  # another request saw the refusal and refreshed
    ex = ReauthExchange(gateway(clock, secrets))
    action = asyncio.run(ex.request_headers(HEADERS, "claude-1"))  # this retry carries the old token
    assert isinstance(action, Mutate) and action.set_headers == {"authorization": "Bearer fresh-token"}
    assert secrets.events == ["invalidate"]  # not invalidated again
