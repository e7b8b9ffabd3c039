"""The account store against real files: modes, atomicity, locking, and refusing bad files (other processes and
other users: tests/integration/test_token_store_access.py)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from extproc.auth.store import (
    Account,
    AccountNotFound,
    StoreError,
    TokenStore,
    default_store_path,
    new_account_id,
)

ACCESS, REFRESH, KEY = "sk-ant-oat01-ACCESS-abc123", "sk-ant-ort01-REFRESH-def456", "sk-ant-api03-KEY-ghi789"
FULL = Account(id="claude-3f9a1c", kind="claude", email="a@example.com", plan="max", access_token=ACCESS,
               refresh_token=REFRESH, expires_at=1_900_000_000.5, api_key=KEY, project_id="proj-1",
               account_id="acct-1", status="suspended", status_reason="401 from upstream")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "extproc" / "accounts.json"


@pytest.fixture
def store(path: Path) -> TokenStore:
    return TokenStore(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_missing_file_is_an_empty_store(store: TokenStore, path: Path) -> None:
    assert store.load() == []
    assert store.get("claude-3f9a1c") is None
    assert not path.parent.exists()  # reading never creates anything


def test_round_trip_of_every_field(store: TokenStore, path: Path) -> None:
    stored = store.upsert(FULL)
    assert stored.created_at == stored.updated_at > 0
    loaded = TokenStore(path).load()
    assert loaded == [stored] == [replace(FULL, created_at=stored.created_at, updated_at=stored.updated_at)]


def test_file_is_sorted_indented_json_without_nulls(store: TokenStore, path: Path) -> None:
    store.upsert(Account(id="console-000001", kind="console", api_key=KEY))
    text = path.read_text()
    data = json.loads(text)
    assert data["version"] == 1
    (item,) = data["accounts"]
    assert list(item) == sorted(item)
    assert set(item) == {"id", "kind", "api_key", "status", "created_at", "updated_at"}
    assert "\n  " in text and text.endswith("\n")


def test_repr_shows_no_secret() -> None:
    text = repr(FULL) + str(FULL)
    assert "claude-3f9a1c" in text
    assert not any(secret in text for secret in (ACCESS, REFRESH, KEY))


def test_created_file_is_0600_in_0700_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "accounts.json"
    TokenStore(path).upsert(FULL)
    assert mode(path) == 0o600
    assert mode(path.with_name("accounts.json.lock")) == 0o600
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


def test_broader_existing_mode_is_tightened_on_write(store: TokenStore, path: Path) -> None:
    store.upsert(FULL)
    os.chmod(path, 0o644)
    store.upsert(Account(id="codex-aaaaaa", kind="codex"))
    assert mode(path) == 0o600


def test_broader_mode_is_tightened_even_when_nothing_changes(store: TokenStore, path: Path) -> None:
    store.upsert(FULL)
    os.chmod(path, 0o644)
    assert store.remove("no-such-account") is False
    assert mode(path) == 0o600


def test_atomic_writes_leave_no_temp_files(store: TokenStore, path: Path) -> None:
    for i in range(5):
        store.upsert(Account(id=f"gemini-{i:06x}", kind="gemini", access_token=ACCESS))
    store.remove("gemini-000002")
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.json", "accounts.json.lock"]


def test_upsert_replaces_by_id_in_place_and_keeps_created_at(store: TokenStore) -> None:
    first = store.upsert(FULL)
    store.upsert(Account(id="codex-aaaaaa", kind="codex"))
    again = store.upsert(Account(id=FULL.id, kind="claude", access_token="new-access"))
    assert [a.id for a in store.load()] == [FULL.id, "codex-aaaaaa"]
    assert again.created_at == first.created_at and again.updated_at >= first.updated_at
    assert store.get(FULL.id) == again and again.refresh_token is None  # a replace, not a merge


def test_update_persists_a_rotated_refresh_token(store: TokenStore, path: Path) -> None:
    first = store.upsert(FULL)
    updated = store.update(FULL.id, lambda a: replace(a, access_token="new-access", refresh_token="rotated-refresh",
                                                      expires_at=2_000_000_000.0))
    reloaded = TokenStore(path).get(FULL.id)
    assert reloaded == updated
    assert reloaded is not None
    assert (reloaded.refresh_token, reloaded.expires_at) == ("rotated-refresh", 2_000_000_000.0)
    assert reloaded.created_at == first.created_at and reloaded.updated_at >= first.updated_at
    assert REFRESH not in path.read_text()


def test_update_of_a_missing_account_raises(store: TokenStore, path: Path) -> None:
    store.upsert(FULL)
    before = path.read_bytes()
    with pytest.raises(AccountNotFound, match="no account 'codex-ffffff'") as info:
        store.update("codex-ffffff", lambda a: a)
    assert isinstance(info.value, KeyError) and isinstance(info.value, StoreError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_update_may_not_change_the_id(store: TokenStore) -> None:
    store.upsert(FULL)
    with pytest.raises(ValueError, match="may not change"):
        store.update(FULL.id, lambda a: Account(id="other-000000", kind=a.kind))
    assert [a.id for a in store.load()] == [FULL.id]


def test_remove(store: TokenStore) -> None:
    store.upsert(FULL)
    store.upsert(Account(id="codex-aaaaaa", kind="codex"))
    assert store.remove(FULL.id) is True
    assert store.remove(FULL.id) is False
    assert [a.id for a in store.load()] == ["codex-aaaaaa"]


def test_unknown_keys_in_an_account_are_ignored(store: TokenStore, path: Path) -> None:
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "accounts": [{"id": "x-1", "kind": "claude", "future": [1, 2]}]}))
    assert store.load() == [Account(id="x-1", kind="claude")]


def _valid_account(**extra: Any) -> dict[str, Any]:
    return {"id": "claude-3f9a1c", "kind": "claude", "access_token": ACCESS, **extra}


def _file(*accounts: Any, version: Any = 1) -> bytes:
    return json.dumps({"version": version, "accounts": list(accounts)}).encode()


CORRUPT = {
    "not json": ('{"version": 1, "accounts": [{"access_token": "' + ACCESS + '",\n}]}').encode(),
    "not utf-8": b'{"access_token": "' + ACCESS.encode() + b'\xff"}',
    "empty": b"",
    "top level is a list": json.dumps([_valid_account()]).encode(),
    "no version": json.dumps({"accounts": [_valid_account()]}).encode(),
    "unknown version": _file(_valid_account(), version=2),
    "accounts not a list": json.dumps({"version": 1, "accounts": {"a": _valid_account()}}).encode(),
    "account not an object": _file(ACCESS),
    "account without id": _file({"kind": "claude", "api_key": KEY}),
    "account without kind": _file({"id": "x", "api_key": KEY}),
    "token where a number goes": _file(_valid_account(expires_at=REFRESH)),
    "token of the wrong type": _file(_valid_account(refresh_token=[REFRESH])),
    "duplicate ids": _file(_valid_account(), _valid_account()),
    "windows not an object": _file(_valid_account(windows=[0.5])),
    "a window without its level": _file(_valid_account(windows={"exhausted": False, "levels": [{"name": "5h"}]})),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_bad_file_is_refused_and_never_overwritten(store: TokenStore, path: Path, content: bytes) -> None:
    path.parent.mkdir()
    path.write_bytes(content)
    os.chmod(path, 0o644)
    for attempt in (store.load, lambda: store.upsert(FULL), lambda: store.remove(FULL.id),
                    lambda: store.update(FULL.id, lambda a: a)):
        with pytest.raises(StoreError) as info:
            attempt()
        message = str(info.value)
        assert str(path) in message and "will not overwrite" in message
        assert not any(secret in message for secret in (ACCESS, REFRESH, KEY))
    assert path.read_bytes() == content
    assert mode(path) == 0o644  # not even its mode is touched
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.json", "accounts.json.lock"]


def test_error_messages_say_what_is_wrong(store: TokenStore, path: Path) -> None:
    path.parent.mkdir()
    path.write_bytes(CORRUPT["not json"])
    with pytest.raises(StoreError, match=r"is not valid JSON \(.*line 2"):
        store.load()
    path.write_bytes(CORRUPT["unknown version"])
    with pytest.raises(StoreError, match=r"unknown version \(2\).*newer extproc"):
        store.load()
    path.write_bytes(CORRUPT["token where a number goes"])
    with pytest.raises(StoreError, match=r"accounts\[0\]\.expires_at is a string, expected a number"):
        store.load()


def test_unreadable_path_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.mkdir()  # a directory where the file should be: unreadable even for root
    with pytest.raises(StoreError, match=r"cannot read .*accounts\.json.*untouched"):
        TokenStore(path).load()


def test_default_store_path_honours_xdg_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_store_path() == tmp_path / "cfg" / "extproc" / "accounts.json"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", "relative/dir"):  # the XDG spec says to ignore a relative value
        monkeypatch.setenv("XDG_CONFIG_HOME", unset)
        assert default_store_path() == tmp_path / "home" / ".config" / "extproc" / "accounts.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_store_path() == tmp_path / "home" / ".config" / "extproc" / "accounts.json"


def test_new_account_id() -> None:
    first = new_account_id("claude", "A@Example.com")
    assert first == new_account_id("claude", " a@example.com ")  # stable: logging in again replaces
    assert first.startswith("claude-") and len(first) == len("claude-") + 6
    int(first.removeprefix("claude-"), 16)
    assert new_account_id("codex", "a@example.com") != first
    assert new_account_id("gemini", None) != new_account_id("gemini", None)
    assert new_account_id("gemini", None).startswith("gemini-")


def test_windows_round_trip_and_only_the_windows_change(store: TokenStore) -> None:
    from extproc.core.windows import WindowLevel, WindowState
    store.upsert(FULL)
    state = WindowState(0.97, 1_800_000_000.0, False, (WindowLevel("5h", 0.4, None),
                                                       WindowLevel("7d", 0.97, 1_800_000_000.0)))
    store.update(FULL.id, lambda a: replace(a, windows=state, windows_at=1_799_000_000.0))
    (back,) = TokenStore(store.path).load()
    assert back.windows == state and back.windows_at == 1_799_000_000.0
    assert replace(back, windows=None, windows_at=None, created_at=0.0, updated_at=0.0) == FULL
    assert not state.differs(WindowState(0.99, 1_800_000_000.0, False, (
        WindowLevel("5h", 0.42, None), WindowLevel("7d", 0.99, 1_800_000_000.0))))  # under 5 points: not news
    assert state.differs(WindowState(1.0, 1_800_000_000.0, True, state.levels))
