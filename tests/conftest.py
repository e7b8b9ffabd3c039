"""Shared fixtures: fake providers and real gateway stacks (Envoy + processor) started as a user would, each
stopped when the test or module that started it ends; and the suite-wide secret scan's observers, installed before
any test runs, with the scan (marked `last`) ordered after every other test of the session."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.ports import free_port, free_port_block  # noqa: F401  (the one picker of server ports; tests import it from here)
from tests import secrets_registry
from tests.fakes import FakeProvider
from tests.waits import eventually

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


# ---------------------------------------------------------------- nothing a module started outlives it

STARTED_BY = "EXTPROC_TESTS_STARTED_BY"  # in the environment while a module runs: every process it starts inherits it


@pytest.fixture(scope="module", autouse=True)
def _nothing_outlives_its_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Once a module's fixtures are torn down, no process it started (a gateway, an Envoy, a worker, a
    redis-server, a CLI) is left: they would load the machine, and answer or probe fakes, during later tests.
    Processes are known by the mark they inherit, so an orphan Envoy counts too. Any left are killed, and the
    module fails naming them."""
    mark = f"{os.getpid()}:{request.module.__name__}"
    os.environ[STARTED_BY] = mark
    yield
    del os.environ[STARTED_BY]
    try:
        eventually(lambda: not _marked(mark), "every process the module started has exited", timeout=15)
    except AssertionError:
        left = _marked(mark)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"{request.module.__name__} left processes running: " + "; ".join(
            f"{pid} {cmd}" for pid, cmd in left.items()))


def _marked(mark: str) -> dict[int, str]:
    """pid → command line of the live processes carrying `mark` in their environment."""
    needle = f"{STARTED_BY}={mark}".encode() + b"\0"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # it exited while it was looked at, or is not ours to read
            if needle in (entry / "environ").read_bytes():  # a zombie's reads empty: it has exited
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return found


# ---------------------------------------------------------------- ports



# ---------------------------------------------------------------- readiness of processes a test starts itself

def wait_envoy_live(admin_port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until Envoy's admin says it is live (listeners open, clusters initialised)."""
    def live() -> bool:
        assert proc.poll() is None, f"envoy exited ({proc.returncode})"
        try:
            return httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    eventually(live, f"envoy (admin port {admin_port}) is live")


def wait_serving(url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until a request through Envoy reaches a processor: /readyz is answered by the processor's own Models
    service over the cluster ext_proc uses, so a 200 means a request would be processed, not just accepted."""
    def ready() -> bool:
        assert all(p.poll() is None for p in procs), "a process of the stack exited before it served"
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False
    eventually(ready, f"{url}/readyz answered by the processor")


def wait_log_line(path: Path, text: str) -> None:
    eventually(lambda: path.is_file() and text in path.read_text(errors="replace"), f"{path.name} says {text!r}")


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, then wait for each (SIGKILL after 15 s): none outlives the test that started it."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- gateway stacks

class Stack:
    """`extproc up` in a subprocess with its own config; logs go to a file the tests can read."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        # One block of consecutive free ports for everything the gateway binds: with several workers (the
        # default once state.redis is set) worker i takes processor port + i and relay port + i, which ports
        # picked one by one could hand to the next stack's admin or listener.
        workers = (config.get("processor") or {}).get("workers") or len(os.sched_getaffinity(0))
        base = free_port_block(3 + 2 * workers)
        self.port = (config.get("listen") or {}).get("port") or base
        self.admin_url = f"http://127.0.0.1:{base + 1}"
        self.metrics_url = f"http://127.0.0.1:{base + 2}/metrics"
        config = {
            "listen": {"address": "127.0.0.1", "port": self.port},
            "admin": {"address": "127.0.0.1", "port": base + 1},
            "metrics": {"address": "127.0.0.1", "port": base + 2},
            "log_level": "debug",
            **config,
            # Never the user's own accounts (nor the usage file beside them), even when the test sets auth.
            "auth": {"store": str(workdir / "accounts.json"), **(config.get("auth") or {})},
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
        extra = env or {}  # what the test gives this gateway's environment (a cloud's credentials, say)
        env = {**{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}, **extra}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "extproc", "up", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # a stack that never got ready is stopped all the same (its Envoy and workers with it)
            raise

    def _wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"extproc exited ({self.proc.returncode}):\n{self.logs()}")
            return "extproc ready at" in self.logs()
        try:
            eventually(ready, "extproc up says it is ready", timeout)
        except AssertionError:
            raise TimeoutError(f"extproc not ready:\n{self.logs()}") from None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1) -> None:
        """Until the gateway has logged `text` (`count` times: once per worker, say)."""
        eventually(lambda: self.logs().count(text) >= count, f"the gateway logs {text!r} {count} time(s)")

    def unavailable_card(self, model_id: str) -> dict[str, Any]:
        """The model's card once the gateway shows it unavailable. What an attempt got reaches the processor
        through Envoy's access log as the attempt ends, so the client can be a moment ahead: wait, as a second
        client would."""
        def card() -> dict[str, Any] | None:
            found: dict[str, Any] = httpx.get(f"{self.url}/v1/models/{model_id}").json()
            return None if found["available"] else found
        return eventually(card, f"{model_id} is shown unavailable")

    def fast_routes(self) -> list[str]:
        """The names of the fast routes Envoy holds now (what it reloaded, not what the file says)."""
        dump = httpx.get(self.admin_url + "/config_dump", params={"resource": "dynamic_route_configs"}).json()
        return [route["name"] for config in dump.get("configs", [])
                for host in config["route_config"].get("virtual_hosts", []) for route in host.get("routes", [])
                if route.get("name", "").startswith("fast ")]

    def usage_records(self) -> list[dict[str, Any]]:
        """The usage records the gateway has logged (JSON log lines), oldest first."""
        return [json.loads(line) for line in self.logs().splitlines()
                if line.startswith("{") and '"kind":"usage"' in line]

    def usage_record(self, request_id: str) -> dict[str, Any]:
        """The one usage record of a request, once it is written (after the answer; the fast path's in batches)."""
        found = eventually(lambda: [r for r in self.usage_records() if r["request_id"] == request_id],
                           f"a usage record for {request_id}")
        assert len(found) == 1, f"{len(found)} usage records for one request"
        return found[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # its Envoy and workers die with it (they are told when their parent does)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Stacks:
    """The stacks one test (or one module) starts: all stopped when it ends, and each one's log then checked for
    the suite's secrets."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._stacks: list[Stack] = []

    def __call__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> Stack:
        stack = Stack(config, self._tmp.mktemp("stack"), env)  # one that never gets ready stops itself
        self._stacks.append(stack)
        return stack

    def stop_all(self) -> None:
        for stack in self._stacks:
            stack.stop()
        for stack in self._stacks:
            logs = stack.logs()
            leaked = sorted({name for value, name in secrets_registry.REGISTRY.secrets.items() if value in logs})
            assert not leaked, f"secrets {leaked} appeared in the gateway's logs"


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    """Starts a stack for this test; it is stopped when the test ends."""
    stacks = Stacks(tmp_path_factory)
    yield stacks
    stacks.stop_all()


@pytest.fixture(scope="module")
def make_module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    """Starts a stack for a module's fixture; it is stopped when the module's last test ends."""
    stacks = Stacks(tmp_path_factory)
    yield stacks
    stacks.stop_all()


# ---------------------------------------------------------------- fake providers

@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    """A module's own fake providers: no stack of another module ever sends them anything."""
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


# ---------------------------------------------------------------- redis

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
        try:
            eventually(self._pong, f"redis-server on port {self.port} answers PING", timeout=10)
        except BaseException:
            self.stop()
            raise

    def _pong(self) -> bool:
        """Whether it answers a PING (it is loaded and serving, not merely listening)."""
        assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
