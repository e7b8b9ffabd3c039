from __future__ import annotations

import contextlib

import pytest

from extproc.core.errors import ClientError


def test_client_error_fields_and_str():
    err = ClientError(503, "model_unavailable", "try later", retry_after=3, param="model")
    assert (err.status, err.kind, err.message, err.retry_after, err.param) == (503, "model_unavailable",
                                                                               "try later", 3, "model")
    assert str(err) == "503 model_unavailable: try later"


@contextlib.contextmanager
def _passthrough():
    yield


@pytest.mark.parametrize("action", ["contextmanager", "add_note"])
def test_client_error_supports_the_exception_protocol(action):
    err = ClientError(400, "invalid_request", "bad")
    if action == "add_note":
        err.add_note("while parsing")
        assert err.__notes__ == ["while parsing"]
    else:
        with pytest.raises(ClientError), _passthrough():
            raise err
