"""`extproc auth …` in a terminal: log in (browser + loopback redirect, a pasted code, or a device code), list,
log out, import.

It works on the accounts file directly; a running gateway notices the change within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Awaitable, Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from extproc.auth import device
from extproc.auth.accounts import AccountManager, LoginError, split_pasted
from extproc.auth.imports import DEFAULT_PATHS, LoginFileError, parse_login_file
from extproc.auth.pkce import LoginExpired
from extproc.auth.store import Account, StoreError
from extproc.core.settings import Settings
from extproc.state.stores import account_store

LOGIN_TIMEOUT = 600.0


def run(settings: Settings, command: str, args: list[str], no_browser: bool = False, by_device: bool = False) -> int:
    try:
        return asyncio.run(_run(settings, command, args, no_browser, by_device))
    except (LoginError, LoginExpired, StoreError, LoginFileError) as exc:
        print(f"extproc auth: {exc}", file=sys.stderr)
        return 1


async def _run(settings: Settings, command: str, args: list[str], no_browser: bool, by_device: bool) -> int:
    async with httpx.AsyncClient() as http:
        manager = AccountManager(account_store(settings), settings.flows, http, skew=settings.refresh_skew)
        await manager.load()
        if command == "login":
            account = await login(manager, args[0], no_browser, by_device)
            print(f"logged in: {account.id} ({manager.flow(account.kind).title}"
                  f"{', ' + account.email if account.email else ''})")
        elif command == "list":
            sys.stdout.write(accounts_table(manager.accounts(), manager.flows))
        elif command == "logout":
            if not await manager.remove(args[0]):
                raise LoginError(f"no account {args[0]}; `extproc auth list` shows the accounts")
            print(f"logged out: {args[0]}")
        elif command == "refresh":
            account = await manager.force_refresh(args[0])
            print(f"refreshed: {account.id} (expires {_when(account.expires_at)})")
        elif command == "import":
            return await import_logins(manager, args)
    return 0


async def login(manager: AccountManager, flow_name: str, no_browser: bool, by_device: bool = False) -> Account:
    """Every wait here (the redirect, the pasted code, the device login's polls) is the event loop's: Ctrl-C
    cancels it at once, and no thread is left blocked that would keep the process alive."""
    flow = manager.flow(flow_name)
    if by_device or flow.authorize_url is None:
        return await device_login(manager, flow_name)
    if flow.loopback_port is not None and not no_browser:
        with _loopback(flow.loopback_port, flow.loopback_path) as (redirect_uri, caught):
            pending, url = manager.start_login(flow_name, redirect_uri)
            caught.expected_state = pending.state
            print(f"Opening your browser to log in to {flow.title}. If it does not open, visit:\n{url}", flush=True)
            _in_background(webbrowser.open, url)  # a $BROWSER command runs until it exits
            code, _ = await caught.wait_for(LOGIN_TIMEOUT)
            return await manager.finish_login(code, pending.state)
    pending, url = manager.start_login(flow_name, flow.pasted_redirect)
    print(f"Open this URL, log in to {flow.title}, then paste the code shown "
          f"(or the address the browser ended on):\n{url}", flush=True)
    pasted = await read_line()
    if not pasted.strip():
        raise LoginError("nothing was pasted")
    code, state = split_pasted(pasted)
    return await manager.finish_login(code, state or pending.state)


async def device_login(manager: AccountManager, flow_name: str, clock: Callable[[], float] = time.time,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Account:
    """Print the page and the code to type there, then poll as often as the provider allows (a slow_down
    makes it wait longer) until the user approved, denied, or the code expired."""
    code = await manager.start_device_login(flow_name)
    minutes = max(1, round((code.expires_at - clock()) / 60))
    print(f"To log in to {manager.flow(flow_name).title}, open this page on any device:\n{code.verification_uri}\n"
          f"and enter the code: {code.user_code}\n"
          f"Waiting for the approval (the code expires in {minutes} minutes; Ctrl-C stops)…", flush=True)
    while (wait := device.next_wait(code, clock())) is not None:
        await sleep(wait)
        result = await manager.poll_device_login(code)
        if isinstance(result, device.Ended):
            raise LoginError(result.message)
        if not isinstance(result, device.Waiting):
            return result
        if result.trouble:
            print(f"extproc auth: {result.trouble}; polling again", file=sys.stderr, flush=True)
        code = device.waited(code, result)
    raise LoginError(device.expired(code).message)


async def read_line() -> str:
    """A line from stdin. The read blocks a daemon thread, not the loop: on Ctrl-C the process ends without
    waiting for Enter (a thread of asyncio's executor would hold it open until then)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def give(text: str) -> None:
        if not line.done():
            line.set_result(text)

    def read() -> None:
        text = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for the line any more
            loop.call_soon_threadsafe(give, text)

    _in_background(read)
    return await line


def _in_background(work: Callable[..., object], *args: object) -> None:
    threading.Thread(target=work, args=args, daemon=True).start()


class _Caught:
    """The one redirect a loopback login waits for; the listener's threads hand it to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done: asyncio.Future[tuple[str | None, str | None, str | None]] = loop.create_future()

    expected_state: str | None = None

    def set(self, code: str | None, state: str | None, error: str | None) -> bool:
        """Take the redirect if it belongs to this login; any other request to the port is ignored."""
        if self.expected_state is None or state != self.expected_state:
            return False
        self._loop.call_soon_threadsafe(self._take, (code, state, error))
        return True

    def _take(self, redirect: tuple[str | None, str | None, str | None]) -> None:
        if not self._done.done():
            self._done.set_result(redirect)

    async def wait_for(self, timeout: float) -> tuple[str, str | None]:
        try:
            code, state, error = await asyncio.wait_for(self._done, timeout)
        except TimeoutError:
            raise LoginError(f"no redirect within {timeout:.0f}s; run the login again") from None
        if error or not code:
            raise LoginError(f"the provider refused the login: {error or 'no code in the redirect'}")
        return code, state


@contextlib.contextmanager
def _loopback(port: int, path: str) -> Iterator[tuple[str, _Caught]]:
    caught = _Caught(asyncio.get_running_loop())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path != path:
                self.send_error(404)
                return
            query = parse_qs(parts.query)
            code, state, error = (query.get(k, [None])[0] for k in ("code", "state", "error"))
            if not caught.set(code, state, error):
                self.send_error(400, "not the login this port waits for")
                return
            page = b"<h1>Logged in.</h1><p>You can close this window.</p>" if code else \
                b"<h1>Login failed.</h1><p>See the terminal.</p>"
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    try:
        servers = [ThreadingHTTPServer(("127.0.0.1", port), Handler)]
    except OSError as exc:
        raise LoginError(f"cannot listen on localhost:{port} for the redirect ({exc.strerror}); "
                         "close what uses it, or use --no-browser and paste the code") from None
    bound = servers[0].server_address[1]
    with contextlib.suppress(OSError):  # browsers may resolve localhost to ::1 first; best effort
        servers.append(_IPv6Server(("::1", bound), Handler))
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://localhost:{bound}{path}", caught
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


async def import_logins(manager: AccountManager, kinds: list[str]) -> int:
    """Import each existing login file found (`codex=PATH` picks a file; no argument: every default one)."""
    chosen: dict[str, Path] = {}
    for item in kinds or list(DEFAULT_PATHS):
        kind, _, raw_path = item.partition("=")
        if kind not in DEFAULT_PATHS:
            raise LoginError(f"cannot import {kind!r}; expected one of {', '.join(DEFAULT_PATHS)}")
        chosen[kind] = Path(raw_path) if raw_path else DEFAULT_PATHS[kind]
    imported = 0
    for kind, raw in chosen.items():
        path = raw.expanduser()
        if not path.exists():
            if kinds:
                raise LoginError(f"{path} does not exist")
            continue
        account = await manager.add_imported(parse_login_file(kind, path.read_bytes(), str(path)))
        print(f"imported: {account.id} ({manager.flow(kind).title}) from {path}")
        imported += 1
    if not imported:
        print("nothing to import: no " + ", ".join(str(p) for p in DEFAULT_PATHS.values()))
    return 0


def accounts_table(accounts: list[Account], logins: Iterable[str]) -> str:
    header = ("ACCOUNT", "LOGIN", "EMAIL", "PLAN", "EXPIRES", "STATUS", "WINDOWS")
    rows = [header] + [(a.id, a.kind, a.email or "-", a.plan or "-", _when(a.expires_at),
                        a.status + (f" ({a.status_reason})" if a.status_reason else ""), _windows(a))
                       for a in accounts]
    if len(rows) == 1:
        return f"no accounts: log in with `extproc auth login <{'|'.join(logins)}>`\n"
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def _windows(account: Account) -> str:
    """`5h 42% (resets 12-01 14:00 UTC), 7d 97% (…)`: what the subscription's answers last reported."""
    state = account.windows
    if state is None or not (state.levels or state.exhausted):
        return "-"
    now = time.time()
    parts = []
    for level in state.levels:
        resets = level.resets_at
        when = "" if resets is None or resets <= now else \
            f" (resets {dt.datetime.fromtimestamp(resets, dt.UTC).strftime('%m-%d %H:%M UTC')})"
        parts.append(f"{level.name} {level.utilization:.0%}{when}")
    return ("exhausted: " if state.exhausted else "") + (", ".join(parts) or "no levels reported")


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return stamp + (" (expired)" if at <= time.time() else "")
