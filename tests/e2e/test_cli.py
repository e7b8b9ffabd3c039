"""The command line as a user meets it, in a terminal (a pty): Ctrl-C ends every interactive command at once, with
one line and status 130, never a traceback; `top` reads a keyed gateway without the gateway's secrets and says
when the gateway refuses it; `up` says little at start-up about what the config never named."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import secrets_registry
from tests.conftest import SECRETS, Stack, provider_config
from tests.fakes import FakeProvider

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
HANG_GUARD = 30.0  # seconds, the suite's: only so that a command Ctrl-C did not end fails instead of hanging
CLIENT_KEY = f"client-key-for-top-{os.getpid()}"
secrets_registry.secret("top's client key", CLIENT_KEY)


def _as_a_shell_would() -> None:
    """Ctrl-C's signal as an interactive shell leaves it for the commands it starts. A run of the suite started
    in the background of a script (`make test &`) inherits SIGINT ignored, and so would every command it starts:
    such a command is not interruptible by design (the script's Ctrl-C is meant for the foreground)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A command run in a pseudo-terminal, as a user runs it: its output is read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self._master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "extproc", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
                                     preexec_fn=_as_a_shell_would)
        os.close(slave)
        self.output = ""

    def _read(self, wait: float) -> bool:
        """Take what the command wrote within `wait` seconds; False once the terminal is closed (it exited)."""
        if not select.select([self._master], [], [], wait)[0]:
            return True
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: every end of the terminal is closed
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline and self._read(0.1), f"no {text!r} in:\n{self.output}"

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the status it ends with (the rest of its output read). A command still running
        after the hang guard is made to print every thread's stack (faulthandler, on SIGABRT) for the failure."""
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + HANG_GUARD
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)  # keep the terminal drained: a command blocked writing to it could not end
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait()
            while self._read(0.1):
                pass
            pytest.fail(f"Ctrl-C did not end the command within {HANG_GUARD:.0f} s; its threads:\n{self.output}")
        while self._read(0.1):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self._master)


@pytest.fixture
def terminals() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_one(*args: str, env: dict[str, str] | None = None) -> Terminal:
        opened.append(Terminal(list(args), env))
        return opened[-1]

    yield open_one
    for terminal in opened:
        terminal.close()


def assert_interrupted(terminal: Terminal, command: str) -> None:
    assert terminal.interrupt() == INTERRUPTED, terminal.output
    assert f"extproc {command}: interrupted" in terminal.output
    assert "Traceback" not in terminal.output and "KeyboardInterrupt" not in terminal.output


@pytest.mark.parametrize(("login", "options", "prompt"), [
    ("claude", ["--no-browser"], "paste the code shown"),  # a code the provider's page shows
    ("codex", ["--no-browser"], "paste the code shown"),  # the address the browser ended on
    ("gemini", [], "Opening your browser"),  # the redirect to a listener of its own
])
def test_ctrl_c_ends_a_login_at_once(tmp_path: Path, terminals: Callable[..., Terminal], login: str,
                                     options: list[str], prompt: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"auth": {"store": str(tmp_path / "accounts.json")}}))
    terminal = terminals("auth", "login", login, *options, "--config", str(config), env={"BROWSER": "true"})
    terminal.wait_for(prompt)
    assert_interrupted(terminal, "auth")
    assert not (tmp_path / "accounts.json").exists()  # nothing was logged in


def test_ctrl_c_ends_top_and_up_at_once_and_up_says_little_of_what_the_config_never_named(
        make_stack: Callable[[dict[str, Any]], Stack], terminals: Callable[..., Terminal]) -> None:
    stack = make_stack({})
    terminal = terminals("top", "--config", str(stack.config_path))
    terminal.wait_for("req/s")
    assert_interrupted(terminal, "top")
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(HANG_GUARD) == INTERRUPTED
    logs = stack.logs()
    assert "extproc up: interrupted" in logs and "Traceback" not in logs
    assert "skipping fork() handlers" not in logs  # gRPC's fork handlers: nothing here forks to use gRPC
    assert logs.count("no credential for the built-in providers openai, anthropic, gemini, groq, mistral") == 1
    assert "has no credential" not in logs  # no line per provider the config never named


def test_top_needs_no_secret_and_says_when_the_gateway_refuses_it(
        make_stack: Callable[[dict[str, Any]], Stack], fakes: dict[str, FakeProvider], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOP_TEST_CLIENT_KEY", CLIENT_KEY)  # the gateway's environment, not top's
    stack = make_stack({"providers": provider_config(fakes),
                        "clients": {"keys": [{"name": "me", "key": "${TOP_TEST_CLIENT_KEY}"}]}})
    answer = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"},
                        json={"model": "gpt-6-luna", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    env = {k: v for k, v in os.environ.items() if k not in ("TOP_TEST_CLIENT_KEY", "EXTPROC_CLIENT_KEY")}

    def top(*options: str) -> str:
        done = subprocess.run([sys.executable, "-m", "extproc", "top", "--once", "--config", str(stack.config_path),
                               *options], capture_output=True, text=True, env={**env, "COLUMNS": "200"},
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join(done.stdout.split())  # rich wraps long lines

    refused = top()
    assert "the gateway refused the models API without a client key (401)" in refused
    assert "--key KEY" in refused and "openai:key1" not in refused
    served = top("--key", CLIENT_KEY)
    assert "the gateway refused" not in served and "openai:key1" in served
    assert CLIENT_KEY not in refused + served and SECRETS["openai"] not in refused + served
