"""Shared fixtures: fake providers and a real gateway stack (Envoy + processor) started as a user would; and the
suite-wide secret scan's observers, installed before any test runs, with the scan (marked `last`) ordered after
every other test of the session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import secrets_registry
from tests.fakes import FakeProvider

STATE_KEY = "q3YF0FJ4nUqUqgCAsQ2RZp6pr3sE1-9nOHqYmB9F8pI="  # a Fernet key for tests' state.redis.key
PROVIDERS = ("openai", "anthropic", "gemini", "groq", "mistral")
SECRETS = {name: f"sk-{name}-secret-{os.getpid()}" for name in PROVIDERS}
for _name, _value in SECRETS.items():
    secrets_registry.secret(f"{_name} provider key", _value)
secrets_registry.secret("state key", STATE_KEY)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: runs after every other test of the session (the secret scan)")
    config.addinivalue_line("markers", "first: runs before any other, while no stack of the session is up yet "
                                       "(the benchmark suite's smoke run starts a dozen of its own)")
    secrets_registry.install()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `first` go to the start and `last` to the end, in their order; the sort is stable, so every
    other test keeps its place (and module-scoped fixtures their grouping)."""
    items.sort(key=lambda item: (item.get_closest_marker("first") is None, item.get_closest_marker("last") is not None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (for processor workers: port + i, then their relays)."""
    while True:
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()


class Stack:
    """`extproc up` in a subprocess with its own config; logs go to a file the tests can read."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        # One block of consecutive free ports for everything the gateway binds: with several workers (the
        # default once state.redis is set) worker i takes processor port + i and relay port + i, which ports
        # picked one by one could hand to the next stack's admin or listener.
        workers = (config.get("processor") or {}).get("workers") or len(os.sched_getaffinity(0))
        base = free_port_block(3 + 2 * workers)
        self.port = (config.get("listen") or {}).get("port") or base
        self.metrics_url = f"http://127.0.0.1:{base + 2}/metrics"
        config = {
            "listen": {"address": "127.0.0.1", "port": self.port},
            "admin": {"address": "127.0.0.1", "port": base + 1},
            "metrics": {"address": "127.0.0.1", "port": base + 2},
            "log_level": "debug",
            "auth": {"store": str(workdir / "accounts.json")},  # never the user's own accounts
            **config,
            # A test's processor settings (workers, a token) on top of the ports of this stack's block.
            "processor": {"address": "127.0.0.1", "port": base + 3, "relay_port": base + 3 + workers,
                          **(config.get("processor") or {})},
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "extproc.log"
        secrets_registry.log_file(self.log_path)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extproc", "up", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "extproc ready at" in self.logs():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"extproc exited ({self.proc.returncode}):\n{self.logs()}")
            time.sleep(0.05)
        raise TimeoutError(f"extproc not ready:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def usage_records(self) -> list[dict[str, Any]]:
        """The usage records the gateway has logged (JSON log lines), oldest first."""
        return [json.loads(line) for line in self.logs().splitlines()
                if line.startswith("{") and '"kind":"usage"' in line]

    def usage_record(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The one usage record of a request, once it is written (the fast path's come in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.usage_records() if r["request_id"] == request_id]
            if found:
                assert len(found) == 1, f"{len(found)} usage records for one request"
                return found[0]
            assert time.monotonic() < deadline, f"no usage record for {request_id}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    servers = {name: FakeProvider(name) for name in PROVIDERS}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    if "fakes" in request.fixturenames:
        for server in request.getfixturevalue("fakes").values():
            server.reset()


def provider_config(fakes: dict[str, FakeProvider], without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every built-in provider pointed at its fake, with a key unless named in `without`."""
    return {name: {"base_url": fake.base_url, "api_key": "" if name in without else SECRETS[name]}
            for name, fake in fakes.items()}


@pytest.fixture(scope="session")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, Any]], Stack]]:
    stacks: list[Stack] = []

    def make(config: dict[str, Any]) -> Stack:
        stack = Stack(config, tmp_path_factory.mktemp("stack"))
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
        logs = stack.logs()
        leaked = sorted({name for value, name in secrets_registry.REGISTRY.secrets.items() if value in logs})
        assert not leaked, f"secrets {leaked} appeared in the gateway's logs"


class RedisServer:
    """A real redis-server on a free loopback port, with nothing written to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
