"""The gateway's Prometheus metrics: OpenTelemetry's gen_ai names where they exist, `extproc_*` beside them.

With several processor workers every process writes its figures where the supervisor's `/metrics` adds
them up (prometheus-client's multiprocess mode, switched on by `PROMETHEUS_MULTIPROC_DIR`, which the
supervisor sets for its workers); one process serves its own. The gauges of the current state are not kept
here: `extproc.gauges` works them out at each scrape. Envoy's stats stay on its admin port.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from extproc.core.settings import Address

log = logging.getLogger("extproc")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_MODEL_LABELS = ("gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")
# Bucket boundaries as OpenTelemetry's semantic conventions advise for each instrument.
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage", "Tokens used per request, by type (input, output, cache_read, cache_write).",
    ("gen_ai_token_type", *_MODEL_LABELS),
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864))
REQUEST_DURATION = Histogram(
    "gen_ai_server_request_duration_seconds", "Time from the request to the end of its answer.",
    (*_MODEL_LABELS, "error_type"),
    buckets=(0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92))
TIME_TO_FIRST_TOKEN = Histogram(
    "gen_ai_server_time_to_first_token_seconds", "Time from the request to the first byte of its answer.",
    _MODEL_LABELS,
    buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0))
REQUESTS = Counter("extproc_requests", "Requests by outcome (served, failed, rejected), status and client key.",
                   ("outcome", "status", "client"))
FALLBACKS = Counter("extproc_fallbacks", "Requests served by another model than the one asked for, by why.",
                    ("reason",))
FAILOVER_ATTEMPTS = Counter("extproc_failover_attempts", "Attempts that failed and were learned from, by status "
                            "(none: no answer).", ("reason", "provider"))
COOLDOWNS = Counter("extproc_cooldowns", "Cooldowns health started, by provider and credential id.",
                    ("provider", "credential"))
SUSPENSIONS = Counter("extproc_suspensions", "Suspensions health started, by provider and credential id.",
                      ("provider", "credential"))
TOKEN_REFRESHES = Counter("extproc_token_refreshes", "Login token refreshes, by result.", ("result",))
COST = Counter("extproc_cost_usd", "What requests cost (USD, from the catalog's prices), by client key.",
               ("client",))
MESSAGE_SECONDS = Histogram(
    "extproc_processor_message_seconds", "The processor's time on one ext_proc message, by kind.", ("kind",),
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))


def serve_metrics(address: Address, workers_dir: str | None = None,
                  gauges: Collector | None = None) -> tuple[WSGIServer, threading.Thread]:
    """`/metrics` on its own port: this process's figures, or the sum of every worker's in `workers_dir`, and
    the gauges of the current state (`extproc.gauges`), worked out at each scrape. Any other path is a 404, so a
    probe or a scraper pointed at the wrong path learns it."""
    registry = CollectorRegistry(auto_describe=False)
    if workers_dir is not None:
        MultiProcessCollector(registry, path=workers_dir)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)
    if gauges is not None:
        registry.register(gauges)
    app = make_wsgi_app(registry)

    def only_metrics(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the metrics are at /metrics\n"]
        answer: Iterable[bytes] = app(environ, start_response)
        return answer

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET

    try:
        server = make_server(address.host, address.port, only_metrics, Server, handler_class=_Quiet)
    except OSError as exc:
        raise OSError(f"cannot listen on {address} (metrics.address / metrics.port); is it in use?") from exc
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics")
    thread.start()
    return server, thread


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
