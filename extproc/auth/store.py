"""The account store: one JSON file of OAuth accounts and their tokens, shared safely between processes.

Every mutation is a locked read-modify-write with an atomic replace, so two processes (a gateway refreshing
a token while `extproc` logs in another account) never lose each other's writes, and a crash never leaves a
half-written file. A file we cannot parse is never overwritten: it may hold the only copy of someone's tokens.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from extproc.core.windows import WindowLevel, WindowState

VERSION = 1
_FILE_MODE = 0o600
_DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class Account:
    """One logged-in account. Tokens and keys never appear in a repr or a log."""

    id: str
    kind: str  # claude | console | gemini | codex
    email: str | None = None
    plan: str | None = None
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # unix seconds; None = does not expire (a console API key)
    api_key: str | None = field(default=None, repr=False)  # console: the API key created at login
    project_id: str | None = None  # gemini: the Code Assist project
    account_id: str | None = None  # codex: the ChatGPT account id
    scopes: str | None = None  # the scopes the login was granted (space-separated), when the provider said
    status: str = "active"  # active | suspended
    status_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    windows: WindowState | None = None  # the subscription's usage windows, as its answers last reported them
    windows_at: float | None = None  # when


_STRINGS = frozenset({"email", "plan", "access_token", "refresh_token", "api_key", "project_id", "account_id",
                      "status_reason", "scopes"})
_NUMBERS = frozenset({"expires_at", "created_at", "updated_at", "windows_at"})
_FIELDS = tuple(f.name for f in fields(Account))


class StoreError(Exception):
    """The account file cannot be used; the message names the file and the fix, never a token."""


class RefreshLockBusy(StoreError):
    """Another process held a login's refresh lock too long: the store works, the refresh waits."""


REFRESH_LOCK_WAIT = 10.0  # seconds a refresh waits for another process's (under the reauth filter's timeout)


class AccountNotFound(StoreError, KeyError):
    """No account with the given id; a KeyError too, so `except KeyError` callers work."""

    def __str__(self) -> str:  # KeyError would show the message quoted, like a repr
        return str(self.args[0]) if self.args else ""


def new_account_id(kind: str, email: str | None) -> str:
    """A stable id for kind+email (so logging in again replaces the account), random without an email."""
    if email is None or not email.strip():
        return f"{kind}-{secrets.token_hex(3)}"
    digest = hashlib.sha256(f"{kind}\0{email.strip().lower()}".encode()).hexdigest()
    return f"{kind}-{digest[:6]}"


def default_store_path() -> Path:
    """$XDG_CONFIG_HOME/extproc/accounts.json, else ~/.config/extproc/accounts.json."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"  # the XDG spec ignores relative
    return base / "extproc" / "accounts.json"


class AccountStore(Protocol):
    """Where accounts live: this file store, or Redis for replicas (extproc.state.token_store). Blocking."""

    path: Path

    def load(self) -> list[Account]: ...

    def get(self, account_id: str) -> Account | None: ...

    def upsert(self, account: Account) -> Account: ...

    def update(self, account_id: str, change: Callable[[Account], Account]) -> Account: ...

    def remove(self, account_id: str) -> bool: ...

    def stamp(self) -> object: ...

    def refresh_lock(self, account_id: str) -> contextlib.AbstractContextManager[None]: ...


def store_at(path: str | None) -> TokenStore:
    """The store at a configured path (`~` expanded), else at the default one."""
    return TokenStore(Path(path).expanduser() if path else default_store_path())


class TokenStore:
    """Blocking file I/O by design: async callers wrap calls in asyncio.to_thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def load(self) -> list[Account]:
        """Every account in the file; a missing file is an empty store."""
        return _parse(self.path, _read(self.path))

    def get(self, account_id: str) -> Account | None:
        return next((a for a in self.load() if a.id == account_id), None)

    def upsert(self, account: Account) -> Account:
        """Insert, or replace the account with the same id (keeping its created_at)."""
        if not account.id or not account.kind:
            raise ValueError("an Account needs a non-empty id and kind")
        with self._locked() as accounts:
            now = time.time()
            index = _index(accounts, account.id)
            created = now if index is None else accounts[index].created_at
            stored = replace(account, created_at=created, updated_at=now)
            if index is None:
                accounts.append(stored)
            else:
                accounts[index] = stored
            return stored

    def update(self, account_id: str, change: Callable[[Account], Account]) -> Account:
        """Read-modify-write one account under the lock, so a rotated refresh token is never lost."""
        with self._locked() as accounts:
            index = _index(accounts, account_id)
            if index is None:
                raise AccountNotFound(f"no account {account_id!r} in {self.path}; log in again to add it")
            changed = change(accounts[index])
            if changed.id != account_id:
                raise ValueError(f"update() may not change an account's id ({account_id!r} → {changed.id!r})")
            accounts[index] = replace(changed, updated_at=time.time())
            return accounts[index]

    def stamp(self) -> object:
        """Changes whenever the store does (another process wrote it): when to load again."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    @contextlib.contextmanager
    def refresh_lock(self, account_id: str) -> Iterator[None]:
        """Held across a token refresh, so processes on this machine refresh a login one at a time and the
        later ones find the new token instead of spending the refresh token again. One lock per login, waited
        for at most REFRESH_LOCK_WAIT: a thread never blocks for good."""
        _make_dirs(self.path.parent)
        name = hashlib.sha256(account_id.encode()).hexdigest()[:16]
        fd = os.open(self.path.with_name(f".{self.path.name}.refresh-{name}.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            deadline = time.monotonic() + REFRESH_LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RefreshLockBusy(f"another process is refreshing {account_id}") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def remove(self, account_id: str) -> bool:
        """Delete an account; False when there was none (then nothing is rewritten)."""
        with self._locked() as accounts:
            index = _index(accounts, account_id)
            if index is None:
                return False
            del accounts[index]
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Account]]:
        """Hold the lock across read → caller's change → atomic write; write only if the list changed."""
        _make_dirs(self.path.parent)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = _read(self.path)
            before = _parse(self.path, raw)
            accounts = list(before)
            yield accounts
            if accounts != before:
                _sweep_temp_files(self.path)
                _write_atomic(self.path, _dump(accounts))
            elif raw is not None and _mode(self.path) != _FILE_MODE:
                os.chmod(self.path, _FILE_MODE)
        finally:
            os.close(fd)  # closing releases the flock


def _index(accounts: list[Account], account_id: str) -> int | None:
    return next((i for i, a in enumerate(accounts) if a.id == account_id), None)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}; fix its permissions (it should be yours, mode 600) "
                         f"— extproc left it untouched") from None


def _parse(path: Path, raw: bytes | None) -> list[Account]:
    if raw is None:
        return []
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _corrupt(path, f"is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:  # exc.msg is a fixed phrase; exc.doc (the file) is never shown
        raise _corrupt(path, f"is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict) or "version" not in data or not isinstance(data.get("accounts"), list):
        raise _corrupt(path, 'is not an account store (expected {"version": 1, "accounts": [...]})')
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        hint = "; it was written by a newer extproc — upgrade" if isinstance(version, int) and version > 1 else ""
        raise _corrupt(path, f"has an unknown version ({_kind_of(version)}); this extproc reads version 1{hint}")
    accounts = [_parse_account(path, i, item) for i, item in enumerate(data["accounts"])]
    seen: set[str] = set()
    for i, account in enumerate(accounts):
        if account.id in seen:
            raise _corrupt(path, f"has two accounts with id {account.id!r} (accounts[{i}])")
        seen.add(account.id)
    return accounts


def _parse_account(path: Path, index: int, item: Any) -> Account:
    """Check types without ever echoing a value: a wrong-typed field may be a token. Unknown keys are ignored."""
    where = f"accounts[{index}]"
    if not isinstance(item, dict):
        raise _corrupt(path, f"{where} is {_kind_of(item)}, expected an object")
    for name in ("id", "kind"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise _corrupt(path, f"{where} has no {name} (expected a non-empty string)")
    values: dict[str, Any] = {}
    for name in _FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if name == "windows":
            value = _parse_windows(path, f"{where}.windows", value)
        elif name in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _corrupt(path, f"{where}.{name} is {_kind_of(value)}, expected a number")
            value = float(value)
        elif not isinstance(value, str):
            raise _corrupt(path, f"{where}.{name} is {_kind_of(value)}, expected a string")
        values[name] = value
    return Account(**values)


def _parse_windows(path: Path, where: str, value: Any) -> WindowState:
    levels = value.get("levels") if isinstance(value, dict) else None
    if not isinstance(levels, list) or not isinstance(value.get("exhausted", False), bool):
        raise _corrupt(path, f"{where} is {_kind_of(value)}, expected {{exhausted, levels: [...]}}")
    parsed = []
    for i, level in enumerate(levels):
        ok = isinstance(level, dict) and isinstance(level.get("name"), str) and _is_number(level.get("used")) \
            and (level.get("resets_at") is None or _is_number(level.get("resets_at")))
        if not ok:
            raise _corrupt(path, f"{where}.levels[{i}] is not {{name, used, resets_at}}")
        resets = level.get("resets_at")
        parsed.append(WindowLevel(level["name"], float(level["used"]), float(resets) if resets is not None else None))
    fullest = max(parsed, key=lambda lv: lv.utilization, default=None)
    return WindowState(fullest.utilization if fullest else 1.0, fullest.resets_at if fullest else None,
                       bool(value.get("exhausted", False)), tuple(parsed))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dump_windows(state: WindowState) -> dict[str, Any]:
    return {"exhausted": state.exhausted, "levels": [{"name": lv.name, "used": lv.utilization,
                                                      "resets_at": lv.resets_at} for lv in state.levels]}


def _kind_of(value: Any) -> str:
    """A description of a JSON value that is safe to print: its type, or a small number."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1000:
        return str(value)
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _corrupt(path: Path, what: str) -> StoreError:
    return StoreError(f"{path} {what}; fix or move it away — extproc will not overwrite it")


def account_doc(account: Account) -> dict[str, Any]:
    """An account as a JSON object (its tokens included: callers write it only where tokens may be)."""
    return {k: _dump_windows(v) if k == "windows" else v for k in _FIELDS if (v := getattr(account, k)) is not None}


def account_from_doc(where: str, item: Any) -> Account:
    """The account a JSON object holds; a StoreError naming `where` (never a value) when it holds none."""
    return _parse_account(Path(where), 0, item)


def _dump(accounts: list[Account]) -> bytes:
    items = [account_doc(a) for a in accounts]
    return (json.dumps({"version": VERSION, "accounts": items}, sort_keys=True, indent=2) + "\n").encode()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _make_dirs(directory: Path) -> None:
    """Create missing directories (parents too) as 0700; existing ones, like ~/.config, are left alone."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    try:
        os.mkdir(directory, _DIR_MODE)
    except FileExistsError:
        return  # another process made it first
    os.chmod(directory, _DIR_MODE)  # the umask may have narrowed it


def _sweep_temp_files(path: Path) -> None:
    """Remove the temp files of writers that died mid-write (SIGKILL, power loss): each is a copy of the tokens
    that nothing would ever read or remove. Called under the store's lock, which every writer holds from its
    temp file to its rename, so any temp file there is a dead writer's."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for name in os.listdir(path.parent):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path.parent / name)


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file (0600) in the same directory, fsync, rename over the target, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)  # exactly 0600 whatever the umask
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
