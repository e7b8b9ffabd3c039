"""ClientError, the one error of the request path, and the way a refusal travels to the client. Python writes
onto an exception as it travels: a @contextmanager's exit sets __traceback__, add_note sets __notes__. ClientError
is a dataclass: were it frozen, those writes would fail and a 400 would become a crash. Every refusal here is the
code's own (a body that names its model twice), also read in a worker thread as bodies over 1 MiB are, and what
reaches the end is checked against what the code says, in the client's envelope."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator

import pytest

from extproc.core.errors import ClientError
from extproc.core.providers import Api
from extproc.formats import error_body, match_endpoint
from extproc.formats.errors import error_headers

TWO_MODELS = b'{"model": "gpt-a", "model": "gpt-b", "messages": []}'


def test_client_error_fields_and_str():
    err = ClientError(503, "model_unavailable", "try later", retry_after=3, param="model")
    assert (err.status, err.kind, err.message, err.retry_after, err.param) == (503, "model_unavailable",
                                                                               "try later", 3, "model")
    assert str(err) == "503 model_unavailable: try later"


def read_two_models() -> None:
    """The chat endpoint's own reader, on a body it must refuse."""
    endpoint = match_endpoint("/v1/chat/completions")
    assert endpoint is not None
    endpoint.read(TWO_MODELS)


@contextlib.contextmanager
def _around() -> Iterator[None]:
    yield  # an error raised inside comes back through the generator: its exit sets __traceback__


def through_a_contextmanager(refuse: Callable[[], None]) -> None:
    with _around():
        refuse()


def through_a_thread(refuse: Callable[[], None]) -> None:
    asyncio.run(asyncio.to_thread(refuse))


def with_a_note(refuse: Callable[[], None]) -> None:
    try:
        refuse()
    except ClientError as err:
        err.add_note("while reading the request body")
        raise


CARRIERS = {"a @contextmanager": through_a_contextmanager, "a worker thread": through_a_thread,
            "a note on the way": with_a_note}


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_refusal_reaches_the_client_as_the_code_made_it(carrier: str) -> None:
    with pytest.raises(ClientError) as caught:
        CARRIERS[carrier](read_two_models)
    err = caught.value
    assert (err.status, err.kind, err.param) == (400, "duplicate_key", "model")
    assert err.__traceback__ is not None  # written on the way, as Python does for any exception
    openai = json.loads(error_body(Api.OPENAI, err))["error"]
    assert (openai["code"], openai["param"]) == ("duplicate_key", "model") and "more than once" in openai["message"]
    anthropic = json.loads(error_body(Api.ANTHROPIC, err))
    assert anthropic["type"] == "error" and "more than once" in anthropic["error"]["message"]
    assert "retry-after" not in error_headers(err)  # the same body will be refused again: nothing to wait for
