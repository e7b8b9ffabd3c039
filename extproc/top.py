"""`extproc top`: a live look at a running gateway without reading its logs.

It reads what the gateway already serves — `/metrics` for requests, errors, fallbacks, tokens and cost,
and the models API for each credential's health and subscription windows — and draws them with `rich`.
Rates are the difference between two readings. The figures are pure functions of the readings; only
`run` talks to the gateway and the terminal.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from extproc.addresses import local_url
from extproc.core.settings import Settings

Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@dataclass
class Totals:
    requests: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # by outcome
    fallbacks: float = 0.0
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)  # served model → requests, tokens
    cost_by_client: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    requests_by_client: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def totals(samples: Samples) -> Totals:
    out = Totals()
    for (name, labels), value in samples.items():
        tags = dict(labels)
        if name == "extproc_requests_total":
            out.requests[tags.get("outcome", "?")] += value
            out.requests_by_client[tags.get("client", "-")] += value
        elif name == "extproc_fallbacks_total":
            out.fallbacks += value
        elif name == "extproc_cost_usd_total":
            out.cost_by_client[tags.get("client", "-")] += value
        elif name in ("gen_ai_client_token_usage_sum", "gen_ai_server_request_duration_seconds_count"):
            row = out.by_model.setdefault(tags.get("gen_ai_response_model", "?"),
                                          {"requests": 0.0, "input": 0.0, "output": 0.0})
            if name.startswith("gen_ai_server"):
                row["requests"] += value
            elif tags.get("gen_ai_token_type") in ("input", "output"):
                row[tags["gen_ai_token_type"]] += value
    return out


def rate(now: float, before: float, seconds: float) -> float:
    return max(0.0, now - before) / seconds if seconds > 0 else 0.0


def render(now: Totals, before: Totals | None, seconds: float, credentials: list[dict[str, Any]],
           note: str | None = None) -> Group:
    """The frame; `note` says why the credentials cannot be shown (the models API refused), above their table."""
    served, failed, rejected = (now.requests.get(k, 0.0) for k in ("served", "failed", "rejected"))
    head = Table.grid(padding=(0, 3))
    total = served + failed + rejected
    rps = rate(total, sum(before.requests.values()), seconds) if before else 0.0
    errors = rate(failed + rejected, before.requests.get("failed", 0) + before.requests.get("rejected", 0),
                  seconds) if before else 0.0
    head.add_row(f"[b]{rps:.1f}[/b] req/s", f"[b]{errors:.1f}[/b] errors/s", f"{total:.0f} requests",
                 f"{failed:.0f} failed", f"{rejected:.0f} refused", f"{now.fallbacks:.0f} fallbacks")
    models = Table(title="by model", expand=True)
    for col in ("model", "requests", "req/s", "input tokens", "output tokens"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for model, row in sorted(now.by_model.items(), key=lambda kv: -kv[1]["requests"]):
        prev = before.by_model.get(model, {}).get("requests", 0.0) if before else row["requests"]
        models.add_row(model, f"{row['requests']:.0f}", f"{rate(row['requests'], prev, seconds):.1f}",
                       f"{row['input']:.0f}", f"{row['output']:.0f}")
    clients = Table(title="by client key", expand=True)
    for col in ("client", "requests", "cost (USD)"):
        clients.add_column(col, justify="left" if col == "client" else "right")
    for client in sorted(now.requests_by_client, key=lambda c: -now.requests_by_client[c]):
        clients.add_row(client, f"{now.requests_by_client[client]:.0f}", f"{now.cost_by_client.get(client, 0):.4f}")
    health = Table(title="credentials", expand=True)
    for col in ("credential", "model", "state", "windows"):
        health.add_column(col)
    for cred in credentials:
        windows = ", ".join(f"{w.get('name', '?')} {100 * float(w.get('utilization', 0)):.0f}%"
                            for w in cred.get("windows", []))
        state = "[green]ok[/green]" if cred.get("available") else f"[red]{cred.get('unavailable_reason', 'off')}[/red]"
        health.add_row(cred.get("id", "?"), cred.get("model", ""), state, windows or "-")
    return Group(head, models, clients, *([f"[red]{escape(note)}[/red]"] if note else []), health)


def read_credentials(client: httpx.Client, base: str, headers: Mapping[str, str],
                     models: list[str]) -> list[dict[str, Any]]:
    """Each credential once, from the detail of the models it serves (the ones traffic used first)."""
    seen: dict[str, dict[str, Any]] = {}
    for model in models:
        answer = client.get(f"{base}/v1/models/{model}", headers=headers)
        if answer.status_code != 200:
            continue
        for cred in answer.json().get("credential_states", []):
            seen.setdefault(cred["id"], {**cred, "model": model})
    return list(seen.values())


def models_api_note(client: httpx.Client, base: str, headers: Mapping[str, str]) -> str | None:
    """Why the credentials table would stay empty, and the fix: the gateway refused the models API, or did not
    answer it. None when it answers."""
    try:
        status = client.get(f"{base}/v1/models", headers=headers).status_code
    except httpx.HTTPError as exc:
        return f"the models API at {base} did not answer ({type(exc).__name__}); credentials are not shown"
    if status in (401, 403):
        given = "refused the client key given" if headers else "refused the models API without a client key"
        return (f"the gateway {given} ({status}), so credentials are not shown: pass one with --key KEY or "
                "EXTPROC_CLIENT_KEY=KEY")
    return None if status == 200 else f"the models API answered {status}; credentials are not shown"


def run(settings: Settings, key: str | None, interval: float = 2.0, once: bool = False) -> int:
    if settings.metrics is None:
        print("extproc top: metrics is off in this config (metrics: false); turn it on to watch the gateway")
        return 2
    metrics_url = f"{local_url(settings.metrics)}/metrics"
    base = local_url(settings.listen)
    key = key or os.environ.get("EXTPROC_CLIENT_KEY")
    headers = {"authorization": f"Bearer {key}"} if key else {}
    console = Console()
    before: Totals | None = None
    at = time.monotonic()
    with httpx.Client(timeout=5) as client:
        try:
            first = totals(parse_metrics(client.get(metrics_url).text))
        except httpx.HTTPError as exc:
            console.print(f"extproc top: cannot read {metrics_url} ({type(exc).__name__}); is the gateway running?")
            return 1

        def frame(now: Totals, previous: Totals | None, seconds: float) -> Group:
            used = sorted(now.by_model, key=lambda m: -now.by_model[m]["requests"])[:10]
            note = models_api_note(client, base, headers)
            credentials = [] if note else read_credentials(client, base, headers, used)
            return render(now, previous, seconds, credentials, note)

        if once:
            console.print(frame(first, None, 0.0))
            return 0
        before = first
        with Live(frame(first, None, 0.0), console=console, refresh_per_second=1, screen=False) as live:
            while True:
                time.sleep(interval)
                try:
                    now = totals(parse_metrics(client.get(metrics_url).text))
                except httpx.HTTPError:
                    continue
                seconds, at = time.monotonic() - at, time.monotonic()
                live.update(frame(now, before, seconds))
                before = now
