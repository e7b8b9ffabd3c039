"""The console's Accounts page: every login with its state and windows, and every way to log in from the browser.

Thin over the account manager, as the CLI (`extproc auth …`) and the Auth API are: a paste-code login is the
manager's `begin_login` / `finish_pending`, a device login its `start_device_login` / `poll_device_login`, an
import its `add_imported`. What a login in progress needs between two requests (the PKCE verifier, the device
code) travels in the page's form sealed under a key derived from the admin token, so whichever worker or replica
takes the next request finishes it, and the browser can read none of it. No page holds a token.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from extproc.auth import device
from extproc.auth.accounts import AccountManager, LoginError, split_pasted
from extproc.auth.imports import DEFAULT_PATHS, LoginFileError, parse_login_file
from extproc.auth.pkce import LoginExpired, LoginSealer, PendingLogin, challenge_of
from extproc.auth.store import Account, StoreError
from extproc.console.context import PREFIX, console_of, see_other
from extproc.core.errors import CredentialUnavailable
from extproc.core.flows import Flow
from extproc.core.windows import WindowState

log = logging.getLogger("extproc.console")
PAGE = "/console/accounts"
MAX_UPLOAD = 256 * 1024  # a login file is a few KiB


# -- what the page shows (pure)


@dataclass(frozen=True, slots=True)
class WindowView:
    name: str
    used: float  # 0–1, capped for the bar (the text says the real figure)
    percent: str
    resets: str | None


@dataclass(frozen=True, slots=True)
class AccountView:
    id: str
    login: str
    title: str
    email: str | None
    plan: str | None
    status: str
    reason: str | None
    expires: str
    windows: tuple[WindowView, ...]
    exhausted: bool
    windows_at: str | None


@dataclass(frozen=True, slots=True)
class FlowView:
    name: str
    title: str
    pastes: bool  # logs in by a pasted code (PKCE)
    device: bool  # logs in by a device code


def stamp(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def when(at: float | None, now: float) -> str:
    """A moment still to come (an expiry, a reset), said to be past once it is."""
    if at is None:
        return "never"
    return stamp(at) + (" (past)" if at <= now else "")


def window_views(state: WindowState | None, now: float) -> tuple[WindowView, ...]:
    if state is None:
        return ()
    return tuple(WindowView(level.name, min(max(level.utilization, 0.0), 1.0), f"{level.utilization:.0%}",
                            when(level.resets_at, now) if level.resets_at is not None and level.resets_at > now
                            else None)
                 for level in state.levels)


def account_view(account: Account, flows: Mapping[str, Flow], now: float) -> AccountView:
    """An account as the page shows it: never a token, a key or a refresh token."""
    flow = flows.get(account.kind)
    state = account.windows
    return AccountView(
        id=account.id, login=account.kind, title=flow.title if flow else account.kind, email=account.email,
        plan=account.plan, status=account.status, reason=account.status_reason,
        expires="does not expire" if account.expires_at is None else when(account.expires_at, now),
        windows=window_views(state, now), exhausted=bool(state and state.exhausted),
        windows_at=stamp(account.windows_at) if account.windows_at is not None else None)  # always past


def flow_views(flows: Iterable[Flow]) -> list[FlowView]:
    return [FlowView(f.name, f.title, f.authorize_url is not None, f.device is not None) for f in flows]


# -- the routes


def add_account_routes(app: web.Application) -> None:
    """The Accounts page's routes on the console's application (its middleware checks session and CSRF)."""
    app.router.add_get("/accounts", show)
    app.router.add_post("/accounts/{id}/remove", remove)
    app.router.add_post("/accounts/{id}/refresh", refresh)
    app.router.add_post("/accounts/import", import_file)
    app.router.add_post("/accounts/login/{flow}", start_paste)
    app.router.add_post("/accounts/login/{flow}/finish", finish_paste)
    app.router.add_post("/accounts/device/{flow}", start_device)
    app.router.add_post("/accounts/device/{flow}/poll", poll_device)


def _manager(request: web.Request) -> AccountManager:
    manager = console_of(request).manager
    if manager is None:
        raise web.HTTPNotFound(text="no logins in this process")
    return manager


def _secret(request: web.Request) -> str:
    """What seals a login in progress: the admin token (the console is off without one), which every worker and
    replica has, so any of them takes the next step."""
    token = console_of(request).runtime.current.settings.admin_token
    if not token:
        raise web.HTTPForbidden(text="the console is off: set auth.admin_token")
    return token


def _page(request: web.Request, status: int = 200, notice: str | None = None, error: str | None = None,
          step: dict[str, Any] | None = None) -> web.Response:
    """The Accounts page, with what just happened (a notice or an error) and a login's next step, if any (the
    link to open and the form to paste into; the device code). htmx swaps only a 2xx: its polls get one."""
    manager, now = _manager(request), time.time()
    if request.headers.get("hx-request") == "true":
        status = 200
    return console_of(request).render(
        request, "accounts.html", status=status, page="accounts", notice=notice, error=error, step=step,
        accounts=[account_view(a, manager.flows, now) for a in manager.accounts()],
        flows=flow_views(manager.flows.values()), import_kinds=[k for k in DEFAULT_PATHS if k in manager.flows])


def _step(request: web.Request, step: dict[str, Any], status: int = 200) -> web.Response:
    return _page(request, status, error=step.get("error"), step=step)


async def _form(request: web.Request) -> dict[str, Any]:
    return dict(await request.post())


async def show(request: web.Request) -> web.Response:
    gate = console_of(request).gate
    response = _page(request, notice=gate.notice(request))
    gate.clear_notice(request, response)
    return response


def _done(request: web.Request, notice: str) -> web.Response:
    """A form that changed something sends the browser back to the page (Post/Redirect/Get), which says what was
    done: a reload then shows the page again instead of posting a used code or a removal twice."""
    response = see_other(f"{PREFIX}/accounts")
    console_of(request).gate.leave_notice(request, response, notice)
    return response


async def remove(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    try:
        removed = await _manager(request).remove(account_id)
    except StoreError as exc:
        return _page(request, 503, error=f"{account_id} not removed: {exc}")
    if not removed:
        return _page(request, 404, error=f"no account {account_id}")
    log.info("console: account %s removed", account_id)
    return _done(request, f"Removed {account_id}.")


async def refresh(request: web.Request) -> web.Response:
    account_id = request.match_info["id"]
    try:
        await _manager(request).force_refresh(account_id)
    except LoginError as exc:
        return _page(request, 404, error=str(exc))
    except CredentialUnavailable as exc:
        return _page(request, 409, error=f"{account_id} not refreshed: {exc.reason}")
    return _done(request, f"Refreshed {account_id}.")


async def import_file(request: web.Request) -> web.Response:
    """An upload of another tool's login file (what `extproc auth import` reads from disk)."""
    form = await _form(request)
    kind, upload = form.get("kind"), form.get("file")
    if kind not in DEFAULT_PATHS:
        return _page(request, 400, error=f"choose what the file is: one of {', '.join(DEFAULT_PATHS)}")
    content = getattr(upload, "file", None)
    if content is None:
        return _page(request, 400, error="choose a file to upload")
    data = content.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        return _page(request, 413, error="that file is too large to be a login file")
    manager = _manager(request)
    try:
        account = await manager.add_imported(parse_login_file(kind, data, "the uploaded file"))
    except (LoginFileError, LoginError, StoreError) as exc:
        return _page(request, 400, error=f"not imported: {exc}")
    log.info("console: account %s imported", account.id)
    return _done(request, f"Imported {account.id} ({manager.flow(kind).title}).")


async def start_paste(request: web.Request) -> web.Response:
    manager, flow_name = _manager(request), request.match_info["flow"]
    try:
        flow = manager.flow(flow_name)
        pending, url = manager.begin_login(flow_name, flow.pasted_redirect)
    except LoginError as exc:
        return _page(request, 400, error=str(exc))
    log.info("console: %s login started", flow_name)
    return _step(request, _paste_step(flow, pending, url, LoginSealer(_secret(request))))


def _paste_step(flow: Flow, pending: PendingLogin, url: str, sealer: LoginSealer, error: str | None = None
                ) -> dict[str, Any]:
    hosted = flow.hosted_redirect is not None
    return {"kind": "paste", "flow": flow.name, "title": flow.title, "url": url, "hosted": hosted,
            "pending": sealer.seal(pending), "error": error}


async def finish_paste(request: web.Request) -> web.Response:
    manager, flow_name = _manager(request), request.match_info["flow"]
    form = await _form(request)
    sealer = LoginSealer(_secret(request))
    try:
        pending = sealer.open(str(form.get("pending", "")))
        if pending.flow != flow_name:
            raise LoginError(f"this login is a {pending.flow} login, not {flow_name}")
    except (LoginExpired, LoginError) as exc:
        return _page(request, 400, error=str(exc))
    flow = manager.flow(pending.flow)
    try:
        pasted = str(form.get("pasted", ""))
        if not pasted.strip():
            raise LoginError("paste the code the provider showed (or the address the browser ended on)")
        code, state = split_pasted(pasted)
        if state is not None and state != pending.state:
            raise LoginError("that code belongs to another login; paste the code of this one")
        account = await manager.finish_pending(pending, code)
    except LoginError as exc:
        log.warning("console: %s login not finished: %s", flow_name, exc)
        url = flow.authorize_link(pending.redirect_uri, pending.state, challenge_of(pending.verifier))
        return _step(request, _paste_step(flow, pending, url, sealer, error=str(exc)), status=400)
    log.info("console: account %s logged in (%s)", account.id, flow.title)
    return _done(request, _logged_in(account, flow))


async def start_device(request: web.Request) -> web.Response:
    manager, flow_name = _manager(request), request.match_info["flow"]
    try:
        code = await manager.start_device_login(flow_name)
    except LoginError as exc:
        log.warning("console: %s device login not started: %s", flow_name, exc)
        return _page(request, 400, error=str(exc))
    log.info("console: %s device login started", flow_name)
    return _step(request, _device_step(manager.flow(flow_name), code, device.Sealer(_secret(request))))


def _device_step(flow: Flow, code: device.DeviceCode, sealer: device.Sealer, trouble: str | None = None
                 ) -> dict[str, Any]:
    return {"kind": "device", "flow": flow.name, "title": flow.title, "user_code": code.user_code,
            "url": code.verification_uri, "id": sealer.seal(code),
            "interval": device.whole_seconds(code.interval),
            "minutes": max(1, round((code.expires_at - time.time()) / 60)), "trouble": trouble, "error": None}


async def poll_device(request: web.Request) -> web.Response:
    """One poll, as the page asks for it (htmx every `interval` seconds, or the button without script): still
    waiting (the step again, its handle resealed if the provider slowed the polls), ended, or logged in."""
    manager, flow_name = _manager(request), request.match_info["flow"]
    sealer = device.Sealer(_secret(request))
    form = await _form(request)
    try:
        code = sealer.open(str(form.get("id", "")), flow_name)
        result = await manager.poll_device_login(code)
    except (device.HandleRefused, LoginError) as exc:
        log.warning("console: %s device login failed: %s", flow_name, exc)
        return _page(request, 400, error=str(exc))
    if isinstance(result, device.Ended):
        log.warning("console: %s device login ended: %s", flow_name, result.reason)
        return _page(request, 400, error=result.message)
    flow = manager.flow(flow_name)
    if isinstance(result, device.Waiting):
        return _step(request, _device_step(flow, device.waited(code, result), sealer, result.trouble))
    log.info("console: account %s logged in by device code (%s)", result.id, flow.title)
    return _done(request, _logged_in(result, flow))


def _logged_in(account: Account, flow: Flow) -> str:
    return f"Logged in: {account.id} ({flow.title}{', ' + account.email if account.email else ''})."

