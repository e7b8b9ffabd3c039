"""Subscription windows: read from answers, an exhausted one cools the whole account, a nearly full one
goes last so traffic moves before the 429."""

from __future__ import annotations

import orjson
import pytest

from extproc.config import parse_settings
from extproc.core.health import Health
from extproc.core.providers import Api
from extproc.core.registry import Registry
from extproc.core.resolve import candidates
from extproc.core.settings import Credential, HealthPolicy
from extproc.core.view import RequestView
from extproc.core.windows import WindowLevel, WindowState, read_windows, stream_windows
from extproc.request.learning import learn
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import model, settings

FLOWS = parse_settings({}, {}).flows
CLAUDE, CODEX = FLOWS["claude"].use.windows, FLOWS["codex"].use.windows
T = 1_700_000_000.0


@pytest.mark.parametrize(("spec", "headers", "expected"), [
    (CLAUDE, {"anthropic-ratelimit-unified-status": "allowed", "anthropic-ratelimit-unified-5h-utilization": "0.4",
              "anthropic-ratelimit-unified-5h-reset": "1700003600",
              "anthropic-ratelimit-unified-7d-utilization": "0.97",
              "anthropic-ratelimit-unified-7d-reset": "1700500000"},
     WindowState(0.97, 1700500000.0, False)),
    (CLAUDE, {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-5h-utilization": "1.0",
              "anthropic-ratelimit-unified-5h-reset": "1700003600"}, WindowState(1.0, 1700003600.0, True)),
    (CLAUDE, {"anthropic-ratelimit-unified-status": "rejected"}, WindowState(1.0, None, True)),
    (CLAUDE, {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-5h-reset": "1700003600",
              "anthropic-ratelimit-unified-7d-reset": "1700500000"}, WindowState(1.0, 1700003600.0, True)),
    (CODEX, {"x-codex-primary-used-percent": "35", "x-codex-primary-reset-at": "1700001000",
             "x-codex-secondary-used-percent": "80", "x-codex-secondary-reset-at": "1700600000"},
     WindowState(0.8, 1700600000.0, False)),
    (CODEX, {"x-codex-primary-used-percent": "100", "x-codex-primary-reset-at": "1700001000"},
     WindowState(1.0, 1700001000.0, True)),
    (CODEX, {"x-codex-primary-used-percent": "lots"}, None),
    (CLAUDE, {}, None),
])
def test_read_windows(spec, headers, expected):
    assert spec is not None
    found = read_windows(spec, headers)
    assert (found if found is None else (found.utilization, found.resets_at, found.exhausted)) == \
        (expected if expected is None else (expected.utilization, expected.resets_at, expected.exhausted))


def test_every_window_an_answer_reports_is_kept_by_name():
    assert CLAUDE is not None
    found = read_windows(CLAUDE, {"anthropic-ratelimit-unified-5h-utilization": "0.4",
                                  "anthropic-ratelimit-unified-7d-utilization": "0.97",
                                  "anthropic-ratelimit-unified-7d-reset": "1700500000"})
    assert found is not None and found.levels == (WindowLevel("5h", 0.4, None), WindowLevel("7d", 0.97, 1700500000.0))


def test_an_exhausted_window_cools_every_model_of_the_account_until_it_resets():
    health = Health(HealthPolicy())
    block = health.window("claude-1", WindowState(1.0, T + 3600, True), T, 0.95)
    assert block is not None and block.until == T + 3600
    for model_id in ("claude-opus", "claude-haiku"):
        blocked = health.blocked("claude-1", model_id, T + 10)
        assert blocked is not None and "subscription window exhausted" in blocked.reason
    assert health.blocked("claude-1", "claude-opus", T + 3601) is None  # the cooldown ends with the window
    assert health.blocked("claude-2", "claude-opus", T + 10) is None


def test_a_nearly_full_window_goes_last_and_clears_when_it_eases():
    health = Health(HealthPolicy())
    assert health.window("claude-1", WindowState(0.97, T + 3600, False), T, 0.95) is None
    assert health.strained("claude-1", T + 1) and not health.strained("claude-1", T + 3601)
    health.window("claude-1", WindowState(0.5, T + 3600, False), T + 2, 0.95)
    assert not health.strained("claude-1", T + 3)


def test_resolution_serves_with_a_strained_login_only_when_nothing_else_can():
    s = settings(providers={"anthropic": {"api_key": "k", "prefer": "login"}}, models=[model("c", "anthropic")])
    login = Credential(id="claude-1", provider="anthropic", account="claude-1", windows=CLAUDE)
    registry, health = Registry.build(s, extra_credentials=(login,)), Health(s.health)
    req = RequestView(Api.ANTHROPIC, "c", endpoint="messages")
    assert [d.credential.id for d in candidates(req, registry, health, T, limit=2)] == ["claude-1", "anthropic:key1"]
    health.window("claude-1", WindowState(0.97, T + 3600, False), T, 0.95)
    assert [d.credential.id for d in candidates(req, registry, health, T, limit=2)] == ["anthropic:key1", "claude-1"]


def test_learning_reads_a_logins_windows_from_its_successes_and_cools_the_account_on_exhaustion():
    s = settings(providers={"anthropic": {"api_key": "k"}}, models=[model("c", "anthropic")])
    runtime = Runtime(s, clock=Clock(T))
    login = Credential(id="claude-1", provider="anthropic", account="claude-1", windows=CLAUDE)

    class Refresher:
        def invalidate(self, credential: Credential) -> bool:
            return False

        def confirm(self, credential: Credential) -> None:
            pass

        def note_windows(self, credential: Credential, state: WindowState) -> None:
            pass

    full = {"anthropic-ratelimit-unified-7d-utilization": "0.96", "anthropic-ratelimit-unified-7d-reset": str(T + 60)}
    assert learn(runtime, Refresher(), login, s.models[-1], "messages", T, True, 200, full, "rid") is None
    assert runtime.health.strained("claude-1", T + 1)
    refused = {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-5h-reset": str(T + 90)}
    block = learn(runtime, Refresher(), login, s.models[-1], "messages", T, True, 429, refused, "rid")
    assert block is not None and block.until == T + 90 and "exhausted" in block.reason


def test_rotate_at_is_validated():
    from extproc.core.errors import ConfigError
    with pytest.raises(ConfigError, match="auth.rotate_at"):
        parse_settings({"auth": {"rotate_at": 2}}, {})
    assert parse_settings({"auth": {"rotate_at": 0.8}}, {}).rotate_at == 0.8


def windows_event(primary: float, pad: int = 0) -> bytes:
    """Codex's rate-limit event as a stream line, `pad` bytes longer than it needs to be."""
    doc = {"type": "codex.rate_limits", "pad": "x" * pad,
           "rate_limits": {"primary": {"used_percent": primary, "window_minutes": 300, "reset_at": T + 600}}}
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def test_a_stream_line_too_long_to_be_the_event_is_passed_over_not_held():
    """A line that outgrows what is held (64 KiB; a whole answer in one event, say) is let go to its end, even
    coming in pieces with no line break: the stream's memory stays bounded, and the next line is read."""
    assert CODEX is not None
    reader = stream_windows(CODEX)
    assert reader is not None
    long_line = windows_event(90, pad=200_000)  # the event's type in it, but too long to be looked at
    for start in range(0, len(long_line) - 2, 1000):  # its line break comes with the last piece
        assert reader.feed(long_line[start:min(start + 1000, len(long_line) - 2)]) is None
    assert reader.feed(b"\n\n" + windows_event(12)[:40]) is None
    found = reader.feed(windows_event(12)[40:])
    assert found is not None and [(lv.name, lv.utilization) for lv in found.levels] == [("5h", 0.12)]
    whole = stream_windows(CODEX)  # one piece with its line break: the same line is read, at any length
    assert whole is not None and whole.feed(long_line) is not None
