"""A burst: N slow streams opened at once through the gateway (and through bare Envoy, for the floor), each
answer counted as what the client got.

    .venv/bin/python bench/burst.py [--streams 1000] [--events 10] [--interval 0.5] [--workers 1] [--fast-path]

The provider (bench/slow.py, one process) sends EVENTS chat-completion chunks INTERVAL seconds apart, then
`[DONE]`. Every stream is opened at the same moment; each ends up as one of:

  whole     200, every chunk and `[DONE]`, no error event;
  refused   503 with `retry-after` and the client's error envelope (the gateway said at once it cannot take it);
  cut       200, then less than the whole answer (a reset, an early end, an error event midway);
  bare 504  504 with no envelope (Envoy's own timeout, the failure this script was written to show);
  other     anything else (its status and error code are printed).

The gateway goes the full path (`fast_path: false`: every stream through the processor and its relay) unless
--fast-path. Nothing here asserts a figure; `bench/suite.py` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402  (the harness beside this file: processes, configs, ports)

SLOW_MODEL = "slow-model"
KINDS = ("whole", "refused", "cut", "bare 504", "other")


@dataclass
class Tally:
    """What N streams came to."""

    counts: Counter[str] = field(default_factory=Counter)
    others: Counter[str] = field(default_factory=Counter)  # status and code of each `other`, and why a cut was one

    def line(self) -> str:
        text = " | ".join(f"{kind} {self.counts[kind]}" for kind in KINDS)
        return text + (f"  ({', '.join(f'{k}: {n}' for k, n in self.others.most_common(5))})" if self.others else "")

    def as_dict(self) -> dict[str, Any]:
        return {**{kind: self.counts[kind] for kind in KINDS}, "details": dict(self.others)}


def body() -> bytes:
    """A chat stream that asks for its usage, as the SDKs do when they count tokens (one that does not stays on
    the relay with accounting on: the gateway must ask for the usage it records)."""
    return json.dumps({"model": SLOW_MODEL, "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


async def warm(url: str, fast: bool, timeout: float) -> None:
    """One stream served whole first (the path works); with the fast path, until Envoy serves the model alone,
    as it does once the model has been asked for (the burst measures the steady state, not the first request)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for _ in range(120):
            async with session.post(url, data=body(), headers=harness.request_headers()) as answer:
                text = (await answer.read()).decode()
                if answer.status != 200 or not text.rstrip().endswith("data: [DONE]"):
                    raise RuntimeError(f"a single stream was not served whole: {answer.status} {text[:200]!r}")
                if not fast or answer.headers.get("x-extproc-route", "").endswith("; fast"):
                    return
            await asyncio.sleep(0.25)  # the routes file is rewritten within a second of the first request
        raise RuntimeError("the model never went fast")


def _refusal(status: int, headers: Any, content: bytes) -> str | None:
    """The error code of a 503 refusal in OpenAI's envelope with `retry-after`, or None if it is not one."""
    try:
        doc = json.loads(content)
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if status != 503 or "retry-after" not in headers or not isinstance(error, dict) or "message" not in error:
        return None
    late = "no answer from its processor" in str(error.get("message"))  # Envoy's message timeout, not the gate
    return f"{error.get('code')}{' (message timeout)' if late else ''}"


async def one(session: aiohttp.ClientSession, url: str, events: int, tally: Tally, go: asyncio.Event) -> None:
    await go.wait()
    try:
        async with session.post(url, data=body(), headers=harness.request_headers()) as answer:
            if answer.status != 200:
                content = await answer.read()
                if answer.status == 504 and not content:
                    tally.counts["bare 504"] += 1
                elif (code := _refusal(answer.status, answer.headers, content)) is not None:
                    tally.counts["refused"] += 1
                    tally.others[f"refused {code}"] += 1
                else:
                    tally.counts["other"] += 1
                    tally.others[f"{answer.status} {content[:80]!r}"] += 1
                return
            try:
                text = (await answer.read()).decode()
            except aiohttp.ClientError as exc:
                tally.counts["cut"] += 1
                tally.others[f"cut: {type(exc).__name__}"] += 1
                return
    except aiohttp.ClientError as exc:
        tally.counts["other"] += 1
        tally.others[f"no answer: {type(exc).__name__}"] += 1
        return
    chunks = [line for line in text.splitlines() if line.startswith("data: ")]
    if len(chunks) == events + 1 and chunks[-1] == "data: [DONE]" and '"error"' not in text:
        tally.counts["whole"] += 1
    else:
        tally.counts["cut"] += 1
        tally.others[f"cut after {len(chunks)} events"] += 1


async def burst(url: str, streams: int, events: int, timeout: float) -> Tally:
    """`streams` streams, all released at once by one event."""
    tally, go = Tally(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        tasks = [asyncio.create_task(one(session, url, events, tally, go)) for _ in range(streams)]
        await asyncio.sleep(0)  # every task waits on the event
        go.set()
        await asyncio.gather(*tasks)
    return tally


def gateway_config(slow_port: int, args: argparse.Namespace) -> dict[str, Any]:
    port = harness.free_port()
    config = harness.gateway_config(port, harness.free_port_block(2 * args.workers), harness.free_port(), slow_port,
                                    1, args.workers, args.redis, accounting=True)
    config["providers"]["slowp"] = {"base_url": f"http://{harness.HOST}:{slow_port}", "apis": {"openai": "/v1"},
                                    "api_key": harness.PROVIDER_KEY}
    config["models"] = [{"id": SLOW_MODEL, "provider": "slowp", "context_window": 128000}]
    config["max_connections"] = args.streams * 2 + 64
    config["fast_path"] = args.fast_path
    config["processor"].update({k: v for k, v in (("max_wait", args.max_wait), ("max_requests", args.max_requests))
                                if v is not None})
    return config


def run(args: argparse.Namespace, children: harness.Children) -> dict[str, Tally]:
    envoy = harness.envoy_binary()
    slow_port, bare_port = harness.free_port(), harness.free_port()
    slow = children.start("slow-provider", [sys.executable, str(Path(__file__).parent / "slow.py"), str(slow_port),
                                            str(args.events), str(args.interval)])
    harness.wait_listening(slow, slow_port)
    config = gateway_config(slow_port, args)
    harness.own_store(config, children.workdir, "gateway-burst")
    path = children.workdir / "gateway-burst.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    harness.wait_gateway_ready(children.start("gateway-burst", [sys.executable, "-m", "extproc", "up", "--config",
                                                                str(path)]))
    targets = {"gateway": f"http://{harness.HOST}:{config['listen']['port']}{harness.PATH}"}
    if args.bare:
        bare = harness.start_envoy(children, "bare", harness.bare_envoy_bootstrap(bare_port, harness.free_port(),
                                                                                  slow_port), 1, envoy)
        harness.wait_listening(bare, bare_port)
        targets = {"bare": f"http://{harness.HOST}:{bare_port}{harness.PATH}", **targets}
    timeout = args.events * args.interval + 120
    results = {}
    for name, url in targets.items():
        asyncio.run(warm(url, name == "gateway" and args.fast_path, timeout))
        results[name] = asyncio.run(burst(url, args.streams, args.events, timeout))
        print(f"  {name:8}: {results[name].line()}", flush=True)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="N slow streams opened at once: whole, refused, cut, bare 504.")
    parser.add_argument("--streams", type=int, default=1000, help="streams opened at once (default 1000)")
    parser.add_argument("--events", type=int, default=10, help="chunks per stream (default 10)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between chunks (default 0.5)")
    parser.add_argument("--workers", type=int, default=1, help="processor workers (default 1; more need --redis)")
    parser.add_argument("--redis", help="state.redis.url for several workers (e.g. redis://127.0.0.1:6379/0)")
    parser.add_argument("--max-wait", type=float, help="processor.max_wait (default: the gateway's)")
    parser.add_argument("--max-requests", type=int, help="processor.max_requests (default: the gateway's)")
    parser.add_argument("--fast-path", action="store_true", help="leave the fast path on (default: the full path)")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare Envoy")
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"burst: {args.streams} streams of {args.events} events {args.interval:g} s apart, {args.workers} "
          f"worker(s), {'fast path on' if args.fast_path else 'full path (fast_path: false)'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="extproc-burst-") as tmp, harness.terminate_as_interrupt():
        children = harness.Children(Path(tmp))
        try:
            results = run(args, children)
        except KeyboardInterrupt:
            print("\nburst: interrupted; stopping everything it started", file=sys.stderr)
            return 130
        except RuntimeError as exc:
            print(f"\nburst: {exc}", file=sys.stderr)
            return 1
        finally:
            children.stop_all()
    if args.json:
        args.json.write_text(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=2) + "\n")
    lost = results["gateway"].counts
    return 1 if lost["cut"] or lost["bare 504"] or lost["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
