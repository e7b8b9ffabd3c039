"""Client keys, pure: how each SDK sends one, constant-time identification, model globs, config rules."""

from __future__ import annotations

import hashlib

import pytest

from extproc.config import parse_settings
from extproc.core.clients import ClientKey, ClientPolicy, digest, identify, presented_key
from extproc.core.errors import ClientError, ConfigError

KEY = "client-key-0123456789abcdef"


@pytest.mark.parametrize("headers", [
    {"authorization": f"Bearer {KEY}"},
    {"x-api-key": KEY},
    {"x-goog-api-key": KEY},
    {":path": f"/v1beta/models/m:generateContent?alt=sse&key={KEY}"},
])
def test_each_sdks_way_of_sending_a_key_is_read(headers):
    assert presented_key(headers) == KEY


def test_identify_names_the_key_and_refuses_missing_or_unknown_ones():
    policy = ClientPolicy((ClientKey("ci", digest("other-key-000000000")), ClientKey("me", digest(KEY))))
    found = identify(policy, {"x-api-key": KEY})
    assert found is not None and found.name == "me"
    for headers, kind in (({}, "missing_api_key"), ({"x-api-key": "nope"}, "invalid_api_key")):
        with pytest.raises(ClientError) as refused:
            identify(policy, headers)
        assert refused.value.status == 401 and refused.value.kind == kind
        assert "ci" not in refused.value.message and "me" not in refused.value.message  # no key names leak
    assert identify(ClientPolicy(), {}) is None  # no keys, not required: open (loopback)


def test_models_are_globs_on_what_was_asked_and_what_was_chosen():
    key = ClientKey("me", digest(KEY), ("claude-*", "fast"))
    assert key.may_use("claude-haiku-5-5") and key.may_use("fast") and key.may_use("x", "claude-opus")
    assert not key.may_use("gpt-6-luna")
    assert ClientKey("any", digest(KEY)).may_use("anything")


def test_config_requires_keys_off_loopback_and_takes_a_key_or_its_digest():
    with pytest.raises(ConfigError, match=r"clients.keys: listen.address 0.0.0.0 is not loopback"):
        parse_settings({"listen": {"address": "0.0.0.0"}}, {})
    assert not parse_settings({"listen": {"address": "0.0.0.0"}, "clients": {"require_key": False}}, {}).clients.active
    hexed = hashlib.sha256(KEY.encode()).hexdigest()
    s = parse_settings({"clients": {"keys": [{"name": "a", "key": KEY}, {"name": "b", "sha256": hexed,
                                                                        "models": ["claude-*"], "rpm": 30}]}}, {})
    assert [k.rpm for k in s.clients.keys] == [None, 30]
    assert [k.sha256 for k in s.clients.keys] == [digest(KEY), digest(KEY)]
    assert s.clients.keys[1].models == ("claude-*",)
    for bad, where in (({"name": "a"}, "clients.keys[0]: give either key"),
                       ({"name": "a", "key": "short"}, "clients.keys[0].key: use at least 16"),
                       ({"name": "a", "sha256": KEY}, "clients.keys[0].sha256: expected 64 hex digits"),
                       ({"name": "a", "key": KEY, "rpm": 0}, "clients.keys[0].rpm: ")):
        with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            parse_settings({"clients": {"keys": [bad]}}, {})
