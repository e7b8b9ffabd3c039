"""The account store under crashes: a real writer process SIGKILLed at random points, over a thousand writes and
more; and a store that turns corrupt under a running account manager.

A crash must never cost a login: after every kill the file loads as a valid store, every account in it whole, and
nothing the writer had acknowledged is missing (a write is acknowledged after `upsert` returned). What a crash
leaves behind — a temp file with a copy of the tokens — must not pile up either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from extproc.auth.accounts import AccountManager, login_credential
from extproc.auth.store import Account, StoreError, TokenStore
from extproc.config import parse_settings
from extproc.core.errors import CredentialUnavailable

SLOTS = 8  # accounts the writer rotates through: write n goes to account n % SLOTS
PAD = 2000  # characters of token per account: a write is ~20 KB, so a kill often lands inside one
MIN_WRITES, MIN_KILLS, MAX_KILLS = 1000, 30, 60

# The writer: from write START on, upsert the account of each write, then acknowledge it (its number on stdout).
WRITER = f"""
import os, sys
from pathlib import Path
from extproc.auth.store import Account, TokenStore
store, n = TokenStore(Path(sys.argv[1])), int(sys.argv[2])
while True:
    slot = n % {SLOTS}
    store.upsert(Account(id=f"claude-{{slot}}", kind="claude", email=f"u{{slot}}@example.com",
                         access_token=f"at-{{n}}-" + str(n % 10) * {PAD}, refresh_token=f"rt-{{n}}",
                         expires_at=float(n), status_reason=f"write {{n}}"))
    os.write(1, b"%d\\n" % n)
    n += 1
"""


def expected_after(last: int) -> dict[str, int]:
    """Which write each account holds once write `last` (and every one before it) is done."""
    return {f"claude-{k}": last - (last - k) % SLOTS for k in range(SLOTS) if k <= last}


def check_whole(account: Account) -> int:
    """The write an account comes from, after checking every field belongs to that same write."""
    n = int(account.refresh_token.removeprefix("rt-")) if account.refresh_token else -1
    slot = n % SLOTS
    assert (account.id, account.kind, account.email) == (f"claude-{slot}", "claude", f"u{slot}@example.com"), \
        f"{account.id}: fields of another account"
    token_matches = account.access_token == f"at-{n}-" + str(n % 10) * PAD  # compared apart: a failure shows no token
    assert token_matches, f"{account.id}: its access token is not write {n}'s"
    assert (account.expires_at, account.status_reason) == (float(n), f"write {n}"), f"{account.id}: a mixed account"
    return n


def test_a_writer_killed_at_random_points_never_leaves_a_broken_or_stale_store(tmp_path: Path, run_seed: int) -> None:
    path = tmp_path / "extproc" / "accounts.json"
    seed = run_seed  # the run's (pytest's header): EXTPROC_TEST_SEED makes the same choices of when to kill
    rng = random.Random(seed)
    done = -1  # the last write the store holds
    kills = acknowledged = mid_write = 0
    while kills < MIN_KILLS or done + 1 < MIN_WRITES:
        assert kills < MAX_KILLS, f"only {done + 1} writes in {kills} kills (seed {seed})"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(done + 1)], stdout=subprocess.PIPE)
        assert writer.stdout is not None
        acks: list[int] = []
        wanted = rng.randint(5, 45)  # writes to let through, then a kill at a random moment of the next ones
        for line in writer.stdout:
            acks.append(int(line))
            if len(acks) >= wanted:
                break
        time.sleep(rng.uniform(0, 0.003))
        writer.send_signal(signal.SIGKILL)
        acks += [int(line) for line in writer.stdout.read().split()]  # what it acknowledged before it died
        writer.wait()
        assert writer.returncode == -signal.SIGKILL, f"the writer failed by itself (seed {seed})"
        kills += 1
        assert acks == list(range(done + 1, acks[-1] + 1)), f"the writer skipped a write (seed {seed})"
        acknowledged += len(acks)

        accounts = TokenStore(path).load()  # a StoreError here: the crash left a file that is not a store
        held = {a.id: check_whole(a) for a in accounts}
        last = max(held.values())
        # Every write is a read-modify-write: the file is the state after one write, at least the last acknowledged
        # one (one more may have landed between the upsert and its acknowledgement).
        assert acks[-1] <= last <= acks[-1] + 1, f"kill {kills}: acknowledged write {acks[-1]} lost (seed {seed})"
        assert held == expected_after(last), f"kill {kills}: an earlier write was lost (seed {seed})"
        litter = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
        assert len(litter) <= 1, f"kill {kills}: {len(litter)} temp files pile up, each a copy of the tokens"
        mid_write += len(litter)  # this kill landed between a temp file's creation and its rename
        done = last
    TokenStore(path).upsert(Account(id="claude-0", kind="claude"))  # the next clean write sweeps the last one
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.json", "accounts.json.lock"]
    assert done + 1 >= MIN_WRITES and acknowledged >= MIN_WRITES - kills
    print(f"\nstore crash: {done + 1} writes, {acknowledged} acknowledged, {kills} SIGKILLs ({mid_write} mid-write), "
          f"seed {seed}")


# ---------------------------------------------------------------- a corrupt store: reported, and kept as it is

def _valid_store(path: Path) -> bytes:
    store = TokenStore(path)
    for k in range(3):
        store.upsert(Account(id=f"claude-{k}", kind="claude", email=f"u{k}@example.com",
                             access_token=f"at-secret-{k}", refresh_token=f"rt-secret-{k}", expires_at=2e9))
    return path.read_bytes()


def test_every_truncation_of_a_store_is_refused_and_kept(tmp_path: Path) -> None:
    """What a writer without the atomic rename would leave at a crash (or a full disk, or a bad copy): a prefix of
    a good file. Each is refused with an error naming the file, never a token, and is not overwritten by the next
    write (it may hold the only copy of someone's tokens)."""
    path = tmp_path / "accounts.json"
    whole = _valid_store(path)
    tokens = [f"{kind}-secret-{k}" for kind in ("at", "rt") for k in range(3)]
    cuts = sorted({*range(0, len(whole) - 1, max(1, len(whole) // 60)), len(whole) - 2})  # [:-1] is still JSON
    for cut in cuts:
        path.write_bytes(whole[:cut])
        for attempt in (TokenStore(path).load, lambda: TokenStore(path).upsert(Account(id="codex-1", kind="codex"))):
            with pytest.raises(StoreError) as refused:
                attempt()
            message = str(refused.value)
            assert str(path) in message and "will not overwrite" in message, f"cut at {cut}: {message}"
            assert not [i for i, t in enumerate(tokens) if t in message], f"cut at {cut}: a token in the error"
        kept = path.read_bytes() == whole[:cut]
        assert kept, f"cut at {cut}: the file was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.json", "accounts.json.lock"]


def test_a_store_that_turns_corrupt_under_the_account_manager_is_reported_and_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A running gateway's store is damaged (a bad hand edit, a half copy): the manager says so, keeps the last
    good accounts and serves their valid tokens, refuses to refresh into the broken file (the file stays as it
    is), and takes the file again once it is fixed."""
    path = tmp_path / "accounts.json"
    whole = _valid_store(path)
    flows = parse_settings({"oauth": {"claude": {"token_url": "http://127.0.0.1:9/v1/oauth/token"}}}, {}).flows
    broken = whole[: len(whole) // 2]

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            manager = AccountManager(TokenStore(path), flows, http)
            await manager.load()
            cred = login_credential(manager.accounts()[0], flows["claude"])
            path.write_bytes(broken)
            watching = asyncio.create_task(manager.watch(every=0.01))
            try:
                deadline = time.monotonic() + 30  # a hang guard, not a measure
                while not [r for r in caplog.records if r.levelno == logging.ERROR]:
                    assert time.monotonic() < deadline, "the broken store was never reported"
                    await asyncio.sleep(0.01)
                assert [a.id for a in manager.accounts()] == ["claude-0", "claude-1", "claude-2"]
                served = await manager.secret(cred) == "at-secret-0"
                assert served, "a valid token needs no store, yet it was not served"
                with pytest.raises(CredentialUnavailable) as refused:
                    await manager.force_refresh("claude-0")
                assert not refused.value.permanent and "accounts store" in refused.value.reason
                kept = path.read_bytes() == broken
                assert kept, "the broken store was overwritten"

                fixed = json.loads(whole)
                fixed["accounts"][0]["email"] = "fixed@example.com"
                path.write_text(json.dumps(fixed))
                deadline = time.monotonic() + 30  # a hang guard, not a measure
                while manager.accounts()[0].email != "fixed@example.com":
                    assert time.monotonic() < deadline, "the fixed store was never taken again"
                    await asyncio.sleep(0.01)
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching

    with caplog.at_level(logging.ERROR, logger="extproc.auth"):
        asyncio.run(run())
    reported = "\n".join(r.getMessage() for r in caplog.records)
    assert str(path) in reported and "will not overwrite" in reported
    tokenless = "secret-" not in reported
    assert tokenless, "a token in what was logged"
    assert TokenStore(path).load()[0].email == "fixed@example.com"
