"""A request's account: the one header it travels in, and the one usage record it writes, whichever path ends it."""

from __future__ import annotations

import pytest

from extproc.core.clients import ClientKey, ClientPolicy
from extproc.core.headers import ACCOUNT_HEADER
from extproc.core.registry import Registry
from extproc.usage.account import Account, Answer
from extproc.usage.accounting import Accounting
from extproc.usage.record import UsageRecord
from extproc.usage.tokens import Usage
from tests.unit.helpers import model, provider, settings

TEAM = ClientKey("team", models=("known",))
SERVED = "1 alpha:key1 alpha/known chat 100.0 1"  # the attempt header of the first attempt on alpha's key


class Kept(Accounting):
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[UsageRecord, ClientKey | None]] = []

    def record(self, rec: UsageRecord, client: ClientKey | None) -> None:
        self.kept.append((rec, client))


@pytest.fixture
def registry() -> Registry:
    return Registry.build(settings(providers={"alpha": provider({"openai": "/v1"}, "sk-alpha")},
                                   models=[model("known", "alpha")]))


def test_the_account_travels_in_one_header_and_comes_back_whole() -> None:
    sent = Account("rid-1", 1700000000.125, TEAM, "a model/with ünicode", hide_usage=True, holds=True)
    carried = Account.carried({ACCOUNT_HEADER: sent.header(), "x-request-id": "rid-1"}, ClientPolicy((TEAM,)))
    assert carried == sent


def test_a_carried_client_no_longer_configured_keeps_its_name_and_no_budget() -> None:
    sent = Account("rid", 1.0, TEAM, "known")
    carried = Account.carried({ACCOUNT_HEADER: sent.header()})
    assert carried is not None and carried.client == ClientKey("team") and carried.request_id == "-"
    assert Account.carried({ACCOUNT_HEADER: Account("rid", 1.0).header()}) == Account("-", 1.0)


@pytest.mark.parametrize("value", ["", "1.0 team known 0", "soon team known 0 0", "1.0 team known 2 0",
                                   "1.0 team known 0 yes", "1.0 team known 0 0 extra"])
def test_a_header_that_is_no_account_is_none(value: str) -> None:
    assert Account.carried({ACCOUNT_HEADER: value}) is None


def test_a_served_answer_is_recorded_once_and_charged_to_its_client(registry: Registry) -> None:
    sink, account = Kept(), Account("rid", 100.0, TEAM, "known")
    answer = Answer(200, SERVED, "alpha", "direct", first_byte=100.5)
    account.close(sink, registry, "openai", answer, 102.0, Usage(10, 5))
    account.close(sink, registry, "openai", answer, 103.0, Usage(10, 5))  # a second close: nothing more
    ((rec, client),) = sink.kept
    assert client is TEAM
    assert (rec.request_id, rec.client, rec.api, rec.requested, rec.served, rec.provider, rec.credential,
            rec.attempts, rec.status, rec.outcome, rec.route) == \
        ("rid", "team", "openai", "known", "known", "alpha", "alpha:key1", 1, 200, "served", "direct")
    assert (rec.latency, rec.first_token, rec.request_label, rec.response_label) == (2.0, 0.5, "known", "known")
    assert rec.cost > 0


def test_a_refused_request_is_recorded_as_served_by_nobody(registry: Registry) -> None:
    sink = Kept()
    Account("rid", 100.0, None, "made-up").close(sink, registry, "anthropic", Answer(404), 100.25)
    ((rec, _),) = sink.kept
    assert (rec.client, rec.served, rec.provider, rec.credential, rec.attempts, rec.outcome, rec.route) == \
        ("", "", "", "", 0, "rejected", "")
    assert (rec.latency, rec.first_token, rec.usage, rec.cost, rec.request_label) == (0.25, None, None, 0.0, "other")


@pytest.mark.parametrize(("holds", "status", "holder"), [
    (True, 200, "alpha:key1"), (True, 429, ""), (False, 200, ""),
])
def test_only_a_stored_answer_that_was_served_has_a_holder(holds: bool, status: int, holder: str) -> None:
    assert Account("rid", 1.0, holds=holds).holder(Answer(status, SERVED, "alpha")) == holder
    assert Account("rid", 1.0, holds=True).holder(Answer(200)) == ""  # nothing served it
