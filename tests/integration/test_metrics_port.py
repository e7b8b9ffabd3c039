"""The metrics port serves /metrics and nothing else: a probe or scraper pointed at another path learns it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from extproc.core.settings import Address
from extproc.metrics import serve_metrics


@pytest.fixture
def metrics() -> Iterator[str]:
    server, thread = serve_metrics(Address("127.0.0.1", 0))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_metrics_port_answers_metrics_and_404_elsewhere(metrics: str) -> None:
    found = httpx.get(f"{metrics}/metrics")
    assert found.status_code == 200 and "extproc_requests_total" in found.text
    for path in ("/", "/favicon.ico", "/metricsx", "/v1/models"):
        assert httpx.get(f"{metrics}{path}").status_code == 404, path
