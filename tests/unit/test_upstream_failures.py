"""An attempt no provider answered (refused, reset, timed out), without Envoy: how learning tells it from a
provider's own 5xx and records it, how the stream relay names what its call met, and the envelopes' types for
502 and 504. The real Envoy's replies are tested end to end in tests/e2e/test_upstream_failures.py."""

from __future__ import annotations

import json

import httpx
import pytest

from extproc.core.errors import ClientError
from extproc.core.failures import CUT, REFUSED, RESET, TIMEOUT, UNREACHABLE
from extproc.core.headers import FAILURE_HEADER
from extproc.core.providers import Api
from extproc.formats import error_body
from extproc.request.learning import failure_of, learn_attempt
from extproc.request.relay import no_answer
from extproc.runtime import Runtime
from tests.clock import Clock
from tests.unit.helpers import model, settings


@pytest.mark.parametrize(("status", "headers", "cut", "expected"), [
    (0, {}, True, CUT),  # reset while the answer was held to be reshaped: no status reached the router
    (200, {}, True, CUT),  # an answer that began and was cut off is no success
    (200, {}, False, None),
])
def test_an_answer_cut_off_is_a_failure_whatever_status_was_logged(status, headers, cut, expected):
    assert failure_of(status, headers, False, cut) is expected


@pytest.mark.parametrize(("status", "headers", "timed_out", "expected"), [
    (502, {FAILURE_HEADER: "connection_refused"}, False, REFUSED),
    (502, {FAILURE_HEADER: "connection_reset"}, False, RESET),
    (502, {FAILURE_HEADER: "connect_failed"}, False, UNREACHABLE),
    (0, {}, True, TIMEOUT),  # the attempts' router timed the attempt out: no status at all
    (502, {}, False, None),  # a provider's own 502
    (429, {FAILURE_HEADER: "connection_refused"}, False, None),  # a provider's answer cannot pass for Envoy's reply
    (502, {FAILURE_HEADER: "something_else"}, False, None),
])
def test_what_an_attempt_with_no_answer_was(status, headers, timed_out, expected):
    assert failure_of(status, headers, timed_out) is expected


@pytest.fixture
def runtime(clock: Clock) -> Runtime:
    return Runtime(settings(providers={"openai": {"api_key": "oa-1"}}, models=[model("gpt-x", "openai")],
                            failover={"first_byte_timeout": 7.5}, health={"server_error_cooldown": 4}), clock=clock)


class Refresher:
    def invalidate(self, credential: object) -> bool:
        return False

    def confirm(self, credential: object) -> None:
        pass

    def note_windows(self, credential: object, state: object) -> None:
        pass


def _attempt(runtime: Runtime) -> str:
    return f"1 openai:key1 openai/gpt-x chat {runtime.clock()!r} 1"


@pytest.mark.parametrize(("status", "failure", "reason"), [
    (502, REFUSED, "connection refused"),
    (502, RESET, "connection reset before an answer"),
    (0, TIMEOUT, "no answer within 7.5 s"),  # failover.first_byte_timeout
    (502, None, "upstream error (502)"),  # the provider answered 502 itself
])
def test_health_records_a_failure_as_what_it_was(runtime, clock, status, failure, reason):
    block = learn_attempt(runtime, Refresher(), _attempt(runtime), status, {}, "rid", 1, failure)
    assert block is not None and (block.kind, block.reason, block.until) == ("cooldown", reason, clock.now + 4)
    assert runtime.health.blocked("openai:key1", "gpt-x", clock.now) == block


def test_an_attempt_given_up_before_an_answer_because_its_client_left_teaches_nothing(runtime, clock):
    """No status and no failure Envoy saw (no refusal, reset, timeout): the client went away mid-request (a user
    who interrupts a coding agent); the credential served nothing wrong and is not cooled."""
    assert learn_attempt(runtime, Refresher(), _attempt(runtime), 0, {}, "rid", 1, None) is None
    assert runtime.health.blocked("openai:key1", "gpt-x", clock.now) is None


def _caused(exc: httpx.HTTPError, cause: BaseException) -> httpx.HTTPError:
    exc.__cause__ = OSError("All connection attempts failed")
    exc.__cause__.__cause__ = cause
    return exc


@pytest.mark.parametrize(("exc", "expected"), [
    (_caused(httpx.ConnectError("failed"), ConnectionRefusedError(111, "Connect call failed")), REFUSED),
    (_caused(httpx.ConnectError("failed"), OSError(113, "No route to host")), UNREACHABLE),
    (httpx.ConnectTimeout("timed out"), UNREACHABLE),
    (httpx.ReadTimeout("timed out"), TIMEOUT),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), RESET),
    (httpx.ReadError("connection reset by peer"), RESET),
])
def test_the_relay_names_what_its_call_met(exc, expected):
    assert no_answer(exc) is expected


@pytest.mark.parametrize(("status", "openai", "anthropic", "gemini"), [
    (502, "server_error", "api_error", "UNAVAILABLE"),
    (504, "server_error", "timeout_error", "DEADLINE_EXCEEDED"),
])
def test_no_answer_statuses_in_each_envelope(status, openai, anthropic, gemini):
    err = ClientError(status, "k", "m")
    assert json.loads(error_body(Api.OPENAI, err))["error"]["type"] == openai
    assert json.loads(error_body(Api.ANTHROPIC, err))["error"]["type"] == anthropic
    assert json.loads(error_body(Api.GEMINI, err))["error"]["status"] == gemini

