"""Device-code logins, the pure parts: the flow data, reading the code and poll answers, the poll timing, and the
sealed handle an API client polls with."""

from __future__ import annotations

import dataclasses

import pytest

from extproc.auth import device
from extproc.auth.client import Grant, OAuthError
from extproc.config import parse_settings
from extproc.control.auth import DEVICE_SEAL_ENV, device_secret
from extproc.core.errors import ConfigError
from extproc.core.flows import Device, Flow

GITHUB = Device(style="rfc8628", code_url="https://github.example/login/device/code",
                poll_url="https://github.example/login/oauth/access_token")
NOW = 1_700_000_000.0


def flows(**overrides: object) -> dict[str, Flow]:
    return dict(parse_settings({"oauth": overrides}, {}, secrets=False).flows)


def codex(style_device: Device | None = None) -> Flow:
    flow = flows()["codex"]
    return dataclasses.replace(flow, device=style_device) if style_device else flow


def config_error(raw: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, {}, secrets=False)
    return str(caught.value)


# -- the flow data


def test_the_codex_flow_has_openais_device_login_as_data() -> None:
    found = flows()["codex"].device
    assert found is not None and found.style == "openai"
    assert found.code_url.endswith("/deviceauth/usercode") and found.poll_url.endswith("/deviceauth/token")
    assert found.verify_url == "https://auth.openai.com/codex/device"
    assert found.redirect_uri == "https://auth.openai.com/deviceauth/callback"
    assert flows()["claude"].device is None


def test_a_flow_with_a_device_section_and_no_authorize_url_logs_in_by_device_code_only() -> None:
    device_only = {"authorize_url": None, "token_url": None,
                   "device": {"style": "rfc8628", "code_url": GITHUB.code_url, "poll_url": GITHUB.poll_url,
                              "verify_url": "https://github.example/login/device"}}
    flow = flows(codex=device_only)["codex"]
    assert flow.authorize_url is None
    assert flow.token_url == GITHUB.poll_url  # RFC 8628: the token endpoint is the one polled
    with pytest.raises(ValueError, match="device code only"):
        flow.authorize_link("http://localhost/cb", "state", "challenge")


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"authorize_url": None, "device": None}, "oauth.codex.authorize_url", "or a `device` section"),
    ({"device": {"style": "magic", "code_url": "https://a", "poll_url": "https://b"}}, "oauth.codex.device.style",
     "rfc8628, openai"),
    ({"device": {"style": "openai", "code_url": "https://a", "poll_url": "https://b"}},
     "oauth.codex.device.redirect_uri", "needs it"),
    ({"device": {"style": "rfc8628", "poll_url": "https://b"}}, "oauth.codex.device.code_url", "needs it"),
    ({"device": {"style": "rfc8628", "code_url": "ftp://a", "poll_url": "https://b"}}, "oauth.codex.device.code_url",
     "http(s) URL"),
    ({"device": {"style": "rfc8628", "code_url": "https://a", "poll_url": "https://b", "verify": "x"}},
     "oauth.codex.device", "verify"),
    ({"device": {"style": "openai", "code_url": "https://a", "poll_url": "https://b", "redirect_uri": "https://c"},
      "token_url": None}, "oauth.codex.token_url", "non-empty"),
])
def test_a_bad_device_section_is_a_config_error_naming_the_key(section: dict[str, object], key: str,
                                                               words: str) -> None:
    message = config_error({"oauth": {"codex": section}})
    assert key in message and words in message


# -- the code answer


def test_openais_code_answer_takes_usercode_and_a_string_interval_and_lives_fifteen_minutes() -> None:
    code = device.parse_code(codex(), {"device_auth_id": "da-secret", "usercode": "ABCD-1234", "interval": "7"}, NOW)
    assert (code.user_code, code.verification_uri, code.interval) == ("ABCD-1234",
                                                                      "https://auth.openai.com/codex/device", 7.0)
    assert code.expires_at == NOW + device.DEFAULT_LIFETIME and code.device_code == "da-secret"
    assert "da-secret" not in repr(code)


def test_an_rfc8628_code_answer_names_its_page_lifetime_and_interval() -> None:
    flow = codex(GITHUB)
    code = device.parse_code(flow, {"device_code": "dc", "user_code": "WXYZ-9876", "expires_in": 600,
                                    "verification_uri": "https://github.example/login/device"}, NOW)
    assert code.verification_uri == "https://github.example/login/device" and code.expires_at == NOW + 600
    assert code.interval == device.DEFAULT_INTERVAL  # none named: RFC 8628's 5 s


@pytest.mark.parametrize("doc", [{}, {"device_code": "dc"}, {"user_code": "U"}, {"device_code": 5, "user_code": "U"}])
def test_a_code_answer_without_its_codes_is_an_error(doc: dict[str, object]) -> None:
    with pytest.raises(OAuthError, match="device_code or user_code"):
        device.parse_code(codex(GITHUB), {"verification_uri": "https://x", **doc}, NOW)


def test_a_code_answer_naming_no_page_says_which_key_to_set() -> None:
    with pytest.raises(OAuthError, match=r"oauth\.codex\.device\.verify_url"):
        device.parse_code(codex(GITHUB), {"device_code": "dc", "user_code": "U"}, NOW)


# -- poll answers


def pending(interval: float = 5.0) -> device.DeviceCode:
    return device.DeviceCode("codex", "ABCD-1234", "https://x/device", interval, NOW + 900, "dc-secret")


@pytest.mark.parametrize("status", [200, 400])  # GitHub answers its errors with 200, RFC 8628 with 400
def test_rfc8628_poll_answers(status: int) -> None:
    flow = codex(GITHUB)
    assert device.rfc8628_outcome(flow, pending(), status, {"error": "authorization_pending"}, 5) == device.Waiting(5)
    assert device.rfc8628_outcome(flow, pending(), status, {"error": "slow_down"}, 5) == device.Waiting(10, True)
    assert device.rfc8628_outcome(flow, pending(), status, {"error": "slow_down", "interval": 20}, 5) \
        == device.Waiting(20, True)  # the server's own new interval when it names one
    ended = device.rfc8628_outcome(flow, pending(), status, {"error": "expired_token"}, 5)
    assert isinstance(ended, device.Ended) and ended.reason == "expired" and "start it again" in ended.message
    denied = device.rfc8628_outcome(flow, pending(), status, {"error": "access_denied"}, 5)
    assert isinstance(denied, device.Ended) and denied.reason == "denied"
    with pytest.raises(OAuthError, match="incorrect_client_credentials") as refused:
        device.rfc8628_outcome(flow, pending(), status, {"error": "incorrect_client_credentials"}, 5)
    assert refused.value.permanent


def test_an_rfc8628_poll_with_tokens_is_the_grant_and_a_5xx_keeps_waiting() -> None:
    flow = codex(GITHUB)
    grant = device.rfc8628_outcome(flow, pending(), 200, {"access_token": "gho_x", "token_type": "bearer"}, 5)
    assert isinstance(grant, Grant) and grant.access_token == "gho_x" and grant.refresh_token is None
    trouble = device.rfc8628_outcome(flow, pending(), 502, {}, 5)
    assert isinstance(trouble, device.Waiting) and trouble.interval == 5 and "HTTP 502" in str(trouble.trouble)


def test_openai_poll_answers() -> None:
    flow = codex()
    assert device.openai_outcome(flow, 403, {}, 5) == device.Waiting(5)
    assert device.openai_outcome(flow, 404, {}, 5) == device.Waiting(5)
    assert device.openai_outcome(flow, 200, {"authorization_code": "c", "code_challenge": "x",
                                             "code_verifier": "v"}, 5) == ("c", "v")
    with pytest.raises(OAuthError, match="without authorization_code"):
        device.openai_outcome(flow, 200, {"authorization_code": "c"}, 5)
    with pytest.raises(OAuthError, match="HTTP 400"):
        device.openai_outcome(flow, 400, {"error": {"code": "bad_request"}}, 5)
    waiting = device.openai_outcome(flow, 503, {}, 5)
    assert isinstance(waiting, device.Waiting) and waiting.trouble


# -- timing


def test_slow_down_adds_five_seconds_or_takes_the_longer_interval_the_answer_names() -> None:
    assert device.slowed_interval(5, None) == 10
    assert device.slowed_interval(10, "12") == 15
    assert device.slowed_interval(5, 30) == 30


def test_the_wait_never_passes_the_codes_expiry_and_ends_with_it() -> None:
    code = pending(interval=5)
    assert device.next_wait(code, NOW) == 5
    assert device.next_wait(code, NOW + 898) == pytest.approx(2)
    assert device.next_wait(code, NOW + 900) is None
    slowed = device.waited(code, device.Waiting(10, slowed=True))
    assert slowed.interval == 10 and device.waited(code, device.Waiting(5)) is code


# -- the sealed handle


def test_a_sealed_handle_opens_with_the_same_secret_only_and_hides_the_device_code() -> None:
    code = pending()
    handle = device.Sealer("a shared secret of the gateway").seal(code)
    assert "dc-secret" not in handle and "ABCD" not in handle
    assert device.Sealer("a shared secret of the gateway").open(handle, "codex") == code  # another worker
    with pytest.raises(device.HandleRefused, match="not a device login this gateway started"):
        device.Sealer("another gateway's secret").open(handle, "codex")
    with pytest.raises(device.HandleRefused, match="not a device login"):
        device.Sealer("a shared secret of the gateway").open(handle[:-4] + "AAAA", "codex")
    with pytest.raises(device.HandleRefused, match="belongs to a codex login, not copilot"):
        device.Sealer("a shared secret of the gateway").open(handle, "copilot")


def test_whole_seconds_round_up() -> None:
    assert [device.whole_seconds(s) for s in (0.05, 5, 5.2, -1)] == [1, 5, 6, 0]


def test_the_sealing_secret_is_one_every_process_that_may_take_the_next_poll_shares(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = parse_settings({}, {})
    monkeypatch.delenv(DEVICE_SEAL_ENV, raising=False)
    assert device_secret(base) is None  # one process alone: its own random secret
    monkeypatch.setenv(DEVICE_SEAL_ENV, "the supervisor's")  # `extproc serve` workers without a processor token
    assert device_secret(base) == "the supervisor's"
    assert device_secret(dataclasses.replace(base, processor_token="tok")) == "tok"  # `extproc up`'s workers
    assert device_secret(dataclasses.replace(base, processor_token="tok", state_key="k")) == "k"  # replicas
