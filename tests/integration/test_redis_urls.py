"""`state.redis.url` in its other two documented forms, each against a real redis-server: `unix://` (a local
socket) and `rediss://` (TLS, the server's certificate made by `cryptography` and trusted through the URL's
`ssl_ca_certs`). Through each, a gateway reports Redis connected, shares what health learns, and the CLI keeps
logins there, encrypted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests import secrets_registry
from tests.certs import make_leaf
from tests.conftest import STATE_KEY, Stack, free_port
from tests.fakes import FakeProvider
from tests.waits import eventually

ACCESS, REFRESH = "sk-ant-oat01-" + "redisurl" * 5, "sk-ant-ort01-" + "redisurl" * 5  # a Claude Code login's pair
secrets_registry.secret("imported access token", ACCESS)
secrets_registry.secret("imported refresh token", REFRESH)


class OwnRedis:
    """A redis-server started with the given listening arguments (nothing written to disk), ready once it
    answers a PING through `url`, as the gateway will reach it."""

    def __init__(self, listen: list[str], url: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")
        self.url = url
        self.proc = subprocess.Popen([binary, *listen, "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            eventually(self._pong, f"redis-server answers PING at {url.split('?')[0]}")
        except BaseException:
            self.stop()
            raise

    def _pong(self) -> bool:
        assert self.proc.poll() is None, "redis-server exited (does this build support the options given?)"
        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _tls_supported() -> bool:
    binary = shutil.which("redis-server")
    if binary is None:
        return True  # OwnRedis says what is missing
    probe = subprocess.run([binary, "--port", "0", "--tls-port", str(free_port()), "--loglevel", "warning"],
                           capture_output=True, text=True, timeout=10)
    # Without cert files it refuses to start either way; a build without TLS does not know the option at all.
    return "bad directive" not in (probe.stdout + probe.stderr).lower()


@pytest.fixture(params=["unix", "rediss"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnRedis]:
    if request.param == "unix":
        folder = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # a socket path must stay under 108 bytes
        sock = folder / "redis.sock"
        started = OwnRedis(["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"],
                           f"unix://{sock}?db=0")
    else:
        if not _tls_supported():
            pytest.skip("this redis-server is built without TLS")
        folder = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
        leaf = make_leaf(tmp_path / "redis-tls", ("localhost",))
        port = free_port()
        started = OwnRedis(["--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
                            "--tls-cert-file", str(leaf.cert_file), "--tls-key-file", str(leaf.key_file),
                            "--tls-ca-cert-file", str(leaf.ca_file), "--tls-auth-clients", "no"],
                           f"rediss://localhost:{port}/0?ssl_ca_certs={leaf.ca_file}")
    yield started
    started.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_a_gateway_and_the_cli_share_state_through_the_url(
        server: OwnRedis, tmp_path: Path, fakes: dict[str, FakeProvider],
        make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    prefix = f"url{time.monotonic_ns()}:"
    config = {"discovery": False, "strategy": "none",
              "state": {"redis": {"url": server.url, "prefix": prefix, "key": STATE_KEY}},
              "providers": {"ru": {"base_url": fakes["openai"].base_url, "apis": {"openai": "/v1"},
                                   "api_key": "k-redis-url"}},
              "models": [{"id": "ru-model", "provider": "ru", "context_window": 100000, "capabilities": ["tools"]}]}

    # The CLI keeps an imported login in Redis (encrypted), where the gateway started next reads it.
    config_path = tmp_path / "cli.yaml"
    config_path.write_text(yaml.safe_dump({**config, "auth": {"store": str(tmp_path / "unused.json")}}))
    login = tmp_path / "claude.json"
    login.write_text(json.dumps({"claudeAiOauth": {"accessToken": ACCESS, "refreshToken": REFRESH,
                                                   "expiresAt": int((time.time() + 3600) * 1000)}}))
    imported = subprocess.run([sys.executable, "-m", "extproc", "auth", "import", f"claude={login}",
                               "--config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    stored = server.client.hgetall(f"{prefix}accounts")
    assert len(stored) == 1
    (raw,) = stored.values()
    assert ACCESS.encode() not in raw and REFRESH.encode() not in raw  # encrypted at rest
    assert not (tmp_path / "unused.json").exists()  # the file store was not used

    stack = make_stack(config)
    eventually(lambda: httpx.get(stack.url + "/readyz").json().get("shared_state") == "redis: connected",
               "/readyz says Redis is connected")
    claude = httpx.get(stack.url + "/v1/models/claude-haiku-5-5").json()
    assert claude["credentials"] == 1  # the login the CLI put in Redis (no Anthropic key is configured)

    fakes["openai"].script(429, {"retry-after": "60"})
    answer = httpx.post(stack.url + "/v1/chat/completions", json={"model": "ru-model", "messages": [
        {"role": "user", "content": "hi"}]})
    assert answer.status_code == 429
    keys = eventually(lambda: [k.decode() for k in server.client.scan_iter(match=f"{prefix}health:*")
                               if b"ru:key1" in k], "the cooldown is written to Redis")
    entry = server.client.get(keys[0])
    assert entry is not None and server.client.ttl(keys[0]) > 0  # an expiring key, as every replica reads it
