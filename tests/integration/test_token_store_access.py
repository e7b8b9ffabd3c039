"""The account store against other processes and other users: writers in several processes lose nothing, and an
ordinary user cannot read the tokens.

Root reads any file whatever its mode, so the reader is a forked child that drops to `nobody` first; and every
folder above the file is opened to others (they may pass through, not list), so only the file's own mode protects
it. Each check also runs where it must succeed (the same file made readable), so it cannot pass for another
reason.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from extproc.auth.store import Account, StoreError, TokenStore

FULL = Account(id="claude-3f9a1c", kind="claude", email="a@example.com", access_token="sk-ant-oat01-ACCESS-abc123",
               refresh_token="sk-ant-ort01-REFRESH-def456", expires_at=1_900_000_000.5)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user needs root")


@pytest.fixture
def path() -> Iterator[Path]:
    """Where the store goes: under a folder others may pass through (pytest's own temp folders are 0700), in a
    folder the store creates itself."""
    folder = Path(tempfile.mkdtemp(prefix="extproc-store-"))
    os.chmod(folder, 0o711)
    yield folder / "extproc" / "accounts.json"
    shutil.rmtree(folder)


def opened_to_others(path: Path) -> Path:
    """The store made its folder 0700 (a test elsewhere checks it); opened here so the file's mode is all that
    keeps another user out."""
    os.chmod(path.parent, 0o711)
    return path


def as_nobody(action: Callable[[], str]) -> str:
    """What `action` says when run as the user nobody, in a forked child of this process."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but the drop, the action, one write and an exit
        outcome = "the child failed"
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            outcome = action()
        finally:
            os.write(write_end, outcome.encode()[:4000])
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


def read_bytes(path: Path) -> Callable[[], str]:
    def read() -> str:
        try:
            path.read_bytes()
        except PermissionError:
            return "denied"
        return "read"

    return read


def load(path: Path) -> Callable[[], str]:
    def loaded() -> str:
        try:
            TokenStore(path).load()
        except StoreError as exc:
            return str(exc)
        return "loaded"

    return loaded


@needs_root
def test_no_other_user_can_read_the_tokens(path: Path) -> None:
    TokenStore(path).upsert(FULL)
    opened_to_others(path)
    info = os.stat(path)
    assert info.st_uid == os.geteuid(), "the store belongs to whoever wrote it"
    assert stat.S_IMODE(info.st_mode) & 0o077 == 0, f"group or others may use the tokens: {oct(info.st_mode)}"
    assert as_nobody(read_bytes(path)) == "denied"

    os.chmod(path, 0o644)  # the check can fail: a world-readable store is read by another user
    assert as_nobody(read_bytes(path)) == "read"
    TokenStore(path).upsert(replace(FULL, email="b@example.com"))  # and the store's next write shuts it again
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    assert as_nobody(read_bytes(path)) == "denied"


@needs_root
def test_a_store_its_user_cannot_read_is_a_store_error_naming_no_token(path: Path) -> None:
    TokenStore(path).upsert(FULL)
    opened_to_others(path)
    os.chmod(path, 0o644)
    assert as_nobody(load(path)) == "loaded"  # the folders let another user through: only the mode decides

    os.chmod(path, 0)
    message = as_nobody(load(path))
    assert "Permission denied" in message and "untouched" in message, message
    assert FULL.refresh_token is not None and FULL.access_token is not None
    tokenless = FULL.refresh_token not in message and FULL.access_token not in message
    assert tokenless, "a token in the error"


def _write_many(path: str, worker: int, start: Any) -> None:
    store = TokenStore(Path(path))
    start.wait()
    for i in range(20):
        store.upsert(Account(id=f"claude-{worker:02d}{i:04d}", kind="claude", refresh_token=f"r-{worker}-{i}"))


def test_concurrent_writers_lose_nothing(path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    workers = [ctx.Process(target=_write_many, args=(str(path), w, start)) for w in range(8)]
    for proc in workers:
        proc.start()
    start.set()
    for proc in workers:
        proc.join(30)
    assert [proc.exitcode for proc in workers] == [0] * 8
    accounts = TokenStore(path).load()
    assert len(accounts) == 160
    assert {a.id for a in accounts} == {f"claude-{w:02d}{i:04d}" for w in range(8) for i in range(20)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.json", "accounts.json.lock"]
