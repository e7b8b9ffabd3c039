"""The benchmark suite: every request path against bare Envoy in the same rounds, how the cost grows (body
size, registry size, workers), memory per open stream and after many requests, and LiteLLM proxy on the
same fake provider. Writes a report (Markdown table and a PNG plot) and the figures as JSON.

    .venv/bin/python bench/suite.py                 # the full suite (under 15 minutes): docs/benchmarks.md
    .venv/bin/python bench/suite.py --smoke --out D # a few seconds per path: keeps the suite from rotting

Ratios are to bare Envoy measured in the same round; medians over the rounds. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import goals  # noqa: E402  (the issue's targets, beside this file)
import paths  # noqa: E402  (the deployment's paths: client key, streams, login)
import run as harness  # noqa: E402  (the harness beside this file: processes, configs, wrk)

ROOT = Path(__file__).resolve().parents[1]
ALIAS = "fast"
FLAKY, STEADY = "flaky-model", "steady-model"
SLOW_MODEL = "slow-model"
KB = 1024


# ------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Plan:
    rounds: int
    concurrencies: tuple[int, ...]
    duration: float
    warmup: float
    bodies: tuple[int, ...]
    registries: tuple[int, ...]
    streams: int
    requests: int  # driven through one gateway while its memory is watched
    litellm: bool
    stream_concurrency: int  # streams of 100 events are measured at this concurrency only

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        if args.smoke:
            return cls(1, (8,), 1, 0, (KB, 100 * KB), (15, 1000), 20, 2_000, False, 8)
        return cls(args.rounds, (1, 8, 64), 4, 1, (KB, 100 * KB, 1024 * KB, 10 * 1024 * KB), (15, 1000, 10_000),
                   1000, 100_000, not args.no_litellm, paths.STREAM_CONCURRENCY)


@dataclass
class Report:
    machine: dict[str, Any]
    plan: dict[str, Any]
    paths: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # path → conc → figures
    bodies: list[dict[str, float]] = field(default_factory=list)
    registries: list[dict[str, float]] = field(default_factory=list)
    workers: dict[str, float] = field(default_factory=dict)
    streams: dict[str, float] = field(default_factory=dict)
    memory: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)  # the issue's targets against these figures


# ------------------------------------------------------------------------------------------ servers


def fake_429_bootstrap(port: int, admin_port: int) -> dict[str, Any]:
    """A provider whose every answer is a 429 with no retry-after: the first attempt of the failover path."""
    route = {"direct_response": {"status": 429, "body": {"inline_string": json.dumps(
        {"error": {"message": "rate limited", "type": "rate_limit_error"}})}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}
    return harness._envoy_bootstrap(port, admin_port, route, [])


def gateway(children: harness.Children, name: str, fake_port: int, extra: dict[str, Any], *, workers: int = 1,
            redis_url: str | None = None, accounting: bool = False) -> tuple[harness.Child, str]:
    return harness.start_gateway(children, name, fake_port, 1, extra, workers=workers, redis_url=redis_url,
                                 accounting=accounting)


def main_gateway_extra(fake_port: int, fake_429_port: int) -> dict[str, Any]:
    """An alias to rewrite, a provider that always answers 429 and a fallback for it, and cooldowns so short
    that every request of the failover path meets the 429 first."""
    key = harness.PROVIDER_KEY
    return {
        "aliases": {ALIAS: harness.MODEL},
        "providers": {"flaky": {"base_url": f"http://{harness.HOST}:{fake_429_port}", "apis": {"openai": "/v1"},
                                "api_key": key},
                      "steady": {"base_url": f"http://{harness.HOST}:{fake_port}", "apis": {"openai": "/v1"},
                                 "api_key": key}},
        "models": [{"id": FLAKY, "provider": "flaky", "context_window": 128000},
                   {"id": STEADY, "provider": "steady", "context_window": 128000}],
        "fallbacks": {FLAKY: [STEADY]},
        "health": {"backoff_base": 0.001, "backoff_max": 0.001},
    }


def with_model(body: bytes, model: str) -> bytes:
    doc = json.loads(body)
    doc["model"] = model
    return json.dumps(doc, separators=(",", ":")).encode()


def many_models(count: int) -> list[dict[str, Any]]:
    """`count` more models in the registry (the built-in catalog has about 15 with a key here)."""
    return [{"id": f"bench-model-{i:05d}", "provider": "openai", "context_window": 128000} for i in range(count)]


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of a gateway's processor processes and of its Envoy, in MiB."""
    processor = envoy = 0.0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if b"envoy" in cmdline.split(b"\0", 1)[0]:
            envoy += kib / 1024
        else:
            processor += kib / 1024
    return processor, envoy


# ------------------------------------------------------------------------------------------ measuring


def measure_paths(targets: Sequence[harness.Target], plan: Plan, report: Report) -> None:
    """Every path at every concurrency (streams at theirs), alternated in rounds; medians, and the ratio to its
    baseline (bare Envoy, or bare Envoy on the streaming fake) in the same round."""
    report.paths = harness.measure_rounds(targets, plan.concurrencies, plan.rounds, plan.duration, plan.warmup)
    report.targets = [{**asdict(v), "mark": v.mark} for v in goals.verdicts(goals.figures_from(
        report.paths, stream_concurrency=plan.stream_concurrency))]


def measure_bodies(load: harness.Load, bare: str, gw: str, plan: Plan, report: Report) -> None:
    """Added latency at concurrency 1 and throughput at 8, by body size (the same request, padded)."""
    for size in plan.bodies:
        sized = load.with_body(harness.request_body(size), f"-{size}")
        row: dict[str, float] = {"bytes": size}
        for conc in (1, 8):
            b = harness.measure(sized, bare, conc, plan.duration, plan.warmup)
            g = harness.measure(sized, gw, conc, plan.duration, plan.warmup)
            row[f"ratio_c{conc}"] = g.rps / b.rps if b.rps else 0.0
            row[f"added_p50_ms_c{conc}"] = g.p50_ms - b.p50_ms
            row[f"errors_c{conc}"] = b.errors + g.errors
        print(f"  body {size:,} B: ratio at 8 {row['ratio_c8']:.2f}, +p50 at 1 {row['added_p50_ms_c1']:.2f} ms",
              flush=True)
        report.bodies.append(row)


def resolution_cost(models: int) -> float:
    """Microseconds per resolution of a direct request, in process, with `models` more models registered."""
    from extproc.config import parse_settings
    from extproc.core.health import Health
    from extproc.core.providers import Api
    from extproc.core.resolve import resolve
    from extproc.core.view import RequestView
    from extproc.runtime import Snapshot

    settings = parse_settings({"discovery": False, "providers": {"openai": {"api_key": harness.PROVIDER_KEY}},
                               "models": many_models(models)}, {})
    registry = Snapshot.build(settings).registry
    health = Health(settings.health)
    view = RequestView(Api.OPENAI, harness.MODEL, input_tokens=300)
    now = time.time()
    count = 2000
    return timeit.timeit(lambda: resolve(view, registry, health, now), number=count) / count * 1e6


def measure_registries(children: harness.Children, fake_port: int, load: harness.Load, bare: str, plan: Plan,
                       report: Report) -> None:
    for extra in plan.registries:
        child, url = gateway(children, f"gateway-registry-{extra}", fake_port, {"models": many_models(extra)})
        b = harness.measure(load, bare, 8, plan.duration, plan.warmup)
        g = harness.measure(load, url + harness.PATH, 8, plan.duration, plan.warmup)
        row = {"models": extra, "ratio_c8": g.rps / b.rps if b.rps else 0.0, "p50_ms": g.p50_ms,
               "resolve_us": resolution_cost(extra), "processor_mib": rss_mib(child.proc.pid)[0]}
        print(f"  {extra:,} more models: ratio at 8 {row['ratio_c8']:.2f}, resolve {row['resolve_us']:.1f} µs",
              flush=True)
        report.registries.append(row)
        harness._stop(child.proc)


def measure_workers(children: harness.Children, fake_port: int, load: harness.Load, bare: str, one: str,
                    plan: Plan, report: Report) -> None:
    redis = shutil.which("redis-server")
    count = max(2, len(os.sched_getaffinity(0)))
    if redis is None:
        report.notes.append("1 vs N workers not measured: no redis-server (apt-get install redis-server)")
        return
    redis_port = harness.free_port()
    server = children.start("redis", [redis, "--port", str(redis_port), "--bind", harness.HOST, "--save", "",
                                      "--appendonly", "no"])
    harness.wait_listening(server, redis_port)
    _, many = gateway(children, "gateway-workers", fake_port, {}, workers=count,
                      redis_url=f"redis://{harness.HOST}:{redis_port}/0")
    b = harness.measure(load, bare, 8, plan.duration, plan.warmup)
    g1 = harness.measure(load, one, 8, plan.duration, plan.warmup)
    gn = harness.measure(load, many + harness.PATH, 8, plan.duration, plan.warmup)
    report.workers = {"workers": count, "ratio_1": g1.rps / b.rps if b.rps else 0.0,
                      "ratio_n": gn.rps / b.rps if b.rps else 0.0}
    print(f"  1 worker {report.workers['ratio_1']:.2f}, {count} workers {report.workers['ratio_n']:.2f}", flush=True)


async def _hold_streams(url: str, count: int, opened: asyncio.Event, release: asyncio.Event) -> int:
    """`count` streamed requests held open at once; how many got their first chunk."""
    body = json.dumps({"model": SLOW_MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    started = 0
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one() -> None:
            nonlocal started
            async with client.stream("POST", url + harness.PATH, content=body,
                                     headers=harness.request_headers()) as answer:
                chunks = answer.aiter_raw()
                await chunks.__anext__()
                started += 1
                if started == count:
                    opened.set()
                await release.wait()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        try:
            await asyncio.wait_for(opened.wait(), 90)
        except TimeoutError:
            opened.set()  # not all opened in time: the memory is read with those that did
        await asyncio.sleep(0.5)  # the reading is taken while they are held
        held = started
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return held


def measure_streams(children: harness.Children, plan: Plan, report: Report) -> None:
    """Memory per open stream: `streams` slow streams held at once through a gateway of their own."""
    slow_port = harness.free_port()
    harness.wait_listening(children.start("slow-provider", [sys.executable, str(Path(__file__).parent / "slow.py"),
                                                            str(slow_port)]), slow_port)
    child, url = gateway(children, "gateway-streams", slow_port, {
        "providers": {"slowp": {"base_url": f"http://{harness.HOST}:{slow_port}", "apis": {"openai": "/v1"},
                                "api_key": harness.PROVIDER_KEY}},
        "models": [{"id": SLOW_MODEL, "provider": "slowp", "context_window": 128000}],
        "max_connections": plan.streams * 2 + 64})
    before = rss_mib(child.proc.pid)

    async def hold() -> tuple[int, tuple[float, float]]:
        opened, release = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(_hold_streams(url, plan.streams, opened, release))
        await opened.wait()
        during = rss_mib(child.proc.pid)
        return await holder, during

    started, during = asyncio.run(hold())
    report.streams = {"streams": plan.streams, "opened": started, "processor_before_mib": before[0],
                      "processor_during_mib": during[0], "envoy_before_mib": before[1], "envoy_during_mib": during[1],
                      "processor_kib_per_stream": (during[0] - before[0]) * 1024 / max(1, started),
                      "envoy_kib_per_stream": (during[1] - before[1]) * 1024 / max(1, started)}
    print(f"  {started} of {plan.streams} streams open: processor {before[0]:.0f} → {during[0]:.0f} MiB, "
          f"Envoy {before[1]:.0f} → {during[1]:.0f} MiB", flush=True)


def measure_memory(child: harness.Child, url: str, load: harness.Load, plan: Plan, report: Report) -> None:
    """The processor's memory as requests go by (it must stay flat)."""
    done, step = 0, max(1, plan.requests // 5)
    report.memory.append({"requests": 0, "processor_mib": rss_mib(child.proc.pid)[0]})
    while done < plan.requests:
        done += load.run(url, 8, 2).requests
        if done >= len(report.memory) * step or done >= plan.requests:  # about five readings in all
            report.memory.append({"requests": done, "processor_mib": rss_mib(child.proc.pid)[0]})
    print(f"  after {done:,} requests: processor {report.memory[0]['processor_mib']:.0f} → "
          f"{report.memory[-1]['processor_mib']:.0f} MiB", flush=True)


# ------------------------------------------------------------------------------------------ report

_PATHS = {
    "bare": "bare Envoy, plain route to the fake",
    "direct": "extproc, model as asked (no rewrite), accounting off: the fast path, once the model was asked for",
    "full": "extproc, the same request with fast_path: false (every request through the processor)",
    "alias": "extproc, an alias: the model rewritten in the body",
    "accounting": "extproc, direct, with accounting (the default config): the fast path, Envoy reading the usage",
    "translated": "extproc, the request in Anthropic's API, served by the OpenAI model",
    "failover": "extproc, the first attempt answered 429, the fallback serves",
    "keyed": "extproc, the default config with one client key (sent as `Authorization: Bearer`)",
    "login": "extproc, a Claude Pro/Max login (fake OAuth), Claude Code's request on /v1/messages",
    "litellm": "LiteLLM proxy, one worker, same fake",
    "bare-stream": f"bare Envoy on the streaming fake: streams/s of {paths.STREAM_EVENTS} events",
    "stream-chat": f"extproc, default config, chat streams of {paths.STREAM_EVENTS} events with the usage chunk; "
                   "ratio to bare-stream",
    "stream-messages": f"extproc, default config, Anthropic Messages streams of {paths.STREAM_EVENTS} events; "
                       "ratio to bare-stream",
}


def markdown(report: Report) -> str:
    lines = ["# Benchmarks", "",
             f"`make bench-suite` on {report.machine['date']}: {report.machine['nproc']} cores, Envoy "
             f"{report.machine['envoy']} (`--concurrency 1`), Python {report.machine['python']}, load from wrk in its "
             f"own process. {report.plan['rounds']} rounds, {report.plan['duration']:g} s per point after "
             f"{report.plan['warmup']:g} s of warm-up, the paths alternated in each round; medians, and the ratio "
             "to bare Envoy measured in the same round. The upstream is an Envoy answering every request itself.",
             "", "![throughput ratio to bare Envoy, and growth](benchmarks.png)", "",
             "## Paths (1 KB requests)", "",
             f"Streams of {paths.STREAM_EVENTS} SSE events (no pause) come from a Node.js fake and are measured at "
             "their own concurrency, against bare Envoy on the same fake (`bare-stream`); rps is streams/s there.", ""]
    concs = sorted({c for by in report.paths.values() for c in by})
    head = "| path | " + " | ".join(f"rps c{c} | ratio c{c} | +p50 ms c{c}" for c in concs) + " |"
    lines += [head, "|---|" + "---|---|---|" * len(concs)]
    for name, by in report.paths.items():
        cells = [f"{by[c]['rps']:,.0f} | {by[c]['ratio']:.2f} | {by[c]['added_p50_ms']:+.2f}" if c in by
                 else "- | - | -" for c in concs]
        lines.append(f"| {name}: {_PATHS.get(name, name)} | " + " | ".join(cells) + " |")
    if report.targets:
        lines += ["", "## Targets", "", "The deployment's targets, read against this run (ratios to bare Envoy in the "
                  "same rounds; speed is measured here, never asserted by a test):", ""]
        lines += goals.markdown([goals.Verdict(t["target"], t["met"], t["figure"]) for t in report.targets])
    lines += ["", "## Body size", "", "| body | ratio c8 | +p50 ms c1 | +p50 ms c8 |", "|---|---|---|---|"]
    lines += [f"| {row['bytes'] / KB:,.0f} KB | {row['ratio_c8']:.2f} | {row['added_p50_ms_c1']:+.2f} | "
              f"{row['added_p50_ms_c8']:+.2f} |" for row in report.bodies]
    lines += ["", "## Registry size", "", "| models added | ratio c8 | resolve µs (in process) | processor MiB |",
              "|---|---|---|---|"]
    lines += [f"| {row['models']:,.0f} | {row['ratio_c8']:.2f} | {row['resolve_us']:.1f} | {row['processor_mib']:.0f} |"
              for row in report.registries]
    if report.workers:
        w = report.workers
        lines += ["", "## Workers", "", f"Ratio at concurrency 8: 1 worker {w['ratio_1']:.2f}, {w['workers']:.0f} "
                  f"workers {w['ratio_n']:.2f}."]
    if report.streams:
        s = report.streams
        lines += ["", "## Open streams", "",
                  f"{s['opened']:,.0f} of {s['streams']:,.0f} slow streams held open at once: "
                  f"processor {s['processor_before_mib']:.0f} → {s['processor_during_mib']:.0f} MiB "
                  f"({s['processor_kib_per_stream']:.1f} KiB per stream), Envoy {s['envoy_before_mib']:.0f} → "
                  f"{s['envoy_during_mib']:.0f} MiB ({s['envoy_kib_per_stream']:.1f} KiB per stream)."]
    if report.memory:
        lines += ["", "## Memory over requests (accounting on)", "", "| requests | processor MiB |", "|---|---|"]
        lines += [f"| {row['requests']:,.0f} | {row['processor_mib']:.0f} |" for row in report.memory]
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report.notes)]
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (paths_ax, bodies_ax, memory_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    concs = sorted({c for by in report.paths.values() for c in by})
    names = [n for n in report.paths if n not in ("bare", "bare-stream")]
    width = 0.8 / max(1, len(concs))
    for i, conc in enumerate(concs):
        paths_ax.bar([x + i * width for x in range(len(names))],
                     [report.paths[n].get(conc, {}).get("ratio", 0.0) for n in names], width, label=f"c{conc}")
    paths_ax.set_xticks([x + width * (len(concs) - 1) / 2 for x in range(len(names))], names, rotation=30)
    paths_ax.set_ylabel("throughput / bare Envoy (same round)")
    paths_ax.set_title("paths")
    paths_ax.legend()
    sizes = [row["bytes"] / KB for row in report.bodies]
    bodies_ax.plot(sizes, [row["added_p50_ms_c1"] for row in report.bodies], marker="o", label="+p50 ms, c1")
    bodies_ax.plot(sizes, [row["added_p50_ms_c8"] for row in report.bodies], marker="o", label="+p50 ms, c8")
    bodies_ax.set_xscale("log")
    bodies_ax.set_xlabel("body KB")
    bodies_ax.set_title("body size (direct path)")
    bodies_ax.legend()
    memory_ax.plot([row["requests"] for row in report.memory], [row["processor_mib"] for row in report.memory],
                   marker="o")
    memory_ax.set_xlabel("requests")
    memory_ax.set_ylabel("processor RSS MiB")
    memory_ax.set_title("memory over requests")
    memory_ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main


def suite(args: argparse.Namespace, workdir: Path, children: harness.Children) -> Report:
    plan = Plan.of(args)
    envoy = harness.envoy_binary()
    report = Report(harness.machine_info(envoy), asdict(plan))
    load = harness.pick_load(workdir)
    if load.name != "wrk":
        report.notes.append("wrk not found: the load came from the pure-Python client (apt-get install wrk)")
    fake_port, fake_429_port, bare_port = harness.free_port(), harness.free_port(), harness.free_port()
    login_token, login = harness.start_login(children)
    harness.wait_listening(harness.start_envoy(children, "fake", harness.fake_provider_bootstrap(
        fake_port, harness.free_port(), login_token), 1, envoy), fake_port)
    harness.wait_listening(harness.start_envoy(children, "fake-429", fake_429_bootstrap(
        fake_429_port, harness.free_port()), 1, envoy), fake_429_port)
    harness.wait_listening(harness.start_envoy(children, "bare", harness.bare_envoy_bootstrap(
        bare_port, harness.free_port(), fake_port), 1, envoy), bare_port)
    bare = f"http://{harness.HOST}:{bare_port}{harness.PATH}"
    print("starting the gateways ...", flush=True)
    _, main = gateway(children, "gateway", fake_port, main_gateway_extra(fake_port, fake_429_port))
    accounted, accounted_url = gateway(children, "gateway-accounting", fake_port, {}, accounting=True)
    _, full = gateway(children, "gateway-full", fake_port, {"fast_path": False})
    _, keyed = gateway(children, "gateway-keyed", fake_port, paths.keyed_extra(harness.CLIENT_KEY), accounting=True)
    _, logged = gateway(children, "gateway-login", fake_port, paths.login_extra(login["store"], login["token_url"],
                                                                                fake_port), accounting=True)
    streams = harness.start_streams(children, envoy, 1)
    proxy = None
    if plan.litellm:
        proxy = harness.start_litellm(children, fake_port, report.notes, install=True)
    else:
        report.notes.append("LiteLLM proxy not measured in this run (--smoke or --no-litellm)")
    if streams is None:
        report.notes.append("streams not measured: node not found (the streaming fake is bench/stream_fake.js)")
    body = harness.request_body()
    stack = harness.Targets(f"http://{harness.HOST}:{fake_port}{harness.PATH}", bare, accounted_url + harness.PATH,
                            keyed=keyed + harness.PATH, login=logged + paths.MESSAGES_PATH + "?beta=true",
                            stream_fake=streams[0] if streams else None, bare_stream=streams[1] if streams else None,
                            stream=streams[2] if streams else None,
                            litellm=proxy + harness.PATH if proxy else None)
    issue = {t.name: t for t in harness.path_targets(stack, load, plan.stream_concurrency, None, None)}
    targets = [issue["bare"], harness.Target("direct", main + harness.PATH, load),
               harness.Target("full", full + harness.PATH, load),
               harness.Target("alias", main + harness.PATH, load.with_body(with_model(body, ALIAS), "-alias")),
               harness.Target("accounting", accounted_url + harness.PATH, load), issue["keyed"], issue["login"],
               harness.Target("translated", main + harness.TRANSLATED_PATH, issue["translated"].load),
               harness.Target("failover", main + harness.PATH, load.with_body(with_model(body, FLAKY), "-failover")),
               *(issue[name] for name in ("litellm", "bare-stream", "stream-chat", "stream-messages") if name in issue)]
    check(targets)
    print("paths:", flush=True)
    measure_paths(targets, plan, report)
    print("body size:", flush=True)
    measure_bodies(load, bare, main + harness.PATH, plan, report)
    print("registry size:", flush=True)
    measure_registries(children, fake_port, load, bare, plan, report)
    print("workers:", flush=True)
    measure_workers(children, fake_port, load, bare, main + harness.PATH, plan, report)
    print("open streams:", flush=True)
    measure_streams(children, plan, report)
    print("memory over requests:", flush=True)
    measure_memory(accounted, accounted_url + harness.PATH, load, plan, report)
    return report


def check(targets: Sequence[harness.Target]) -> None:
    """One request per path before measuring: a benchmark of errors would measure nothing. The direct path's
    model (with and without accounting) is published for the fast path by its first request: measuring waits
    until it serves fast."""
    for t in targets:
        body, headers = t.load.body, t.load.headers
        answer = httpx.post(t.url, content=body, headers=headers, timeout=10)
        problem = harness.answer_problem(t.name, answer)
        if problem:
            raise RuntimeError(f"{t.name} ({t.url}): {problem}: {answer.text[:300]}")
        if t.name == "failover" and answer.headers.get("x-extproc-attempts") != "2":
            raise RuntimeError(f"failover path made {answer.headers.get('x-extproc-attempts')} attempts, not 2")
        deadline = time.monotonic() + 10
        while t.name in ("direct", "accounting") and not answer.headers.get("x-extproc-route", "").endswith("fast"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the direct path never went fast: {dict(answer.headers)}")
            time.sleep(0.2)
            answer = httpx.post(t.url, content=body, headers=headers, timeout=10)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The benchmark suite: every path, growth and memory, one run.")
    parser.add_argument("--smoke", action="store_true", help="a few seconds per path, no LiteLLM (for the tests)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every path (default 3)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM proxy")
    parser.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="where benchmarks.md and benchmarks.png go (default docs/)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="extproc-suite-") as tmp, harness.terminate_as_interrupt():
        children = harness.Children(Path(tmp))
        try:
            report = suite(args, Path(tmp), children)
        except KeyboardInterrupt:
            print("\nbench-suite: interrupted; stopping everything it started", file=sys.stderr)
            return 130
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"\nbench-suite: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
    report.notes.append(f"the suite ran for {time.monotonic() - started:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.md").write_text(markdown(report))
    plot(report, args.out / "benchmarks.png")
    (args.out / "benchmarks.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"wrote {args.out / 'benchmarks.md'}, benchmarks.png and benchmarks.json")
    errors = [f"{name} c{c}" for name, by in report.paths.items() for c, f in by.items() if f["errors"]]
    if errors:
        print(f"bench-suite: requests failed on {', '.join(errors)}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
