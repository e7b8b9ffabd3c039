"""The Auth service: logins over HTTP (through Envoy's transcoder), thin over the account manager."""

from __future__ import annotations

import hmac
import html
import logging
import os
import secrets
import time
from typing import NoReturn

import grpc
from google.api import httpbody_pb2

from extproc.auth import device
from extproc.auth.accounts import AccountManager, LoginError, split_pasted
from extproc.auth.pkce import STATE_TTL, LoginExpired
from extproc.auth.store import Account, StoreError
from extproc.control.windows import rfc3339, window_messages
from extproc.core.errors import CredentialUnavailable
from extproc.core.settings import Settings
from extproc.v1 import auth_pb2 as pb
from extproc.v1 import auth_pb2_grpc as pb_grpc

log = logging.getLogger("extproc.auth")
DEVICE_SEAL_ENV = "EXTPROC_WORKER_DEVICE_SEAL"  # a supervisor's secret for its workers' device poll ids


def device_secret(settings: Settings) -> str | None:
    """What seals a device login's poll id: a secret every process that may take the next poll shares and API
    clients never see. Replicas share state.redis.key; the workers of one gateway its processor token, or,
    without one, a secret their supervisor made for them."""
    return settings.state_key or settings.processor_token or os.environ.get(DEVICE_SEAL_ENV) or None


class AuthService(pb_grpc.AuthServicer):
    def __init__(self, manager: AccountManager, admin_token: str | None, device_secret: str | None = None) -> None:
        self._manager = manager
        self._admin_token = admin_token
        # Without a shared secret (one `extproc serve` without processor.token) only this process can open its ids.
        self._sealer = device.Sealer(device_secret or secrets.token_urlsafe(32))

    async def StartLogin(self, request: pb.StartLoginRequest, context: grpc.aio.ServicerContext  # noqa: N802
                         ) -> pb.StartLoginResponse:
        await self._admin(context)
        try:
            pending, url = self._manager.start_login(request.login, request.redirect_uri or None)
        except LoginError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("auth api: %s login started (redirect %s)", request.login, pending.redirect_uri)
        return pb.StartLoginResponse(authorize_url=url, state=pending.state, redirect_uri=pending.redirect_uri,
                                     expires_in=int(STATE_TTL))

    async def FinishLogin(self, request: pb.FinishLoginRequest, context: grpc.aio.ServicerContext  # noqa: N802
                          ) -> pb.Account:
        await self._admin(context)
        try:
            code, state = split_pasted(request.pasted) if request.pasted else (request.code, request.state or None)
            if not state:
                raise LoginError("no state: paste code#state as the page shows it, or the whole URL the browser "
                                 "ended on, or send code and state" if request.pasted else "send code and state")
            account = await self._manager.finish_login(code, state, request.login)
        except (LoginError, LoginExpired) as exc:
            log.warning("auth api: %s login not finished: %s", request.login, exc)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return self._message(account)

    async def StartDeviceLogin(self, request: pb.StartDeviceLoginRequest,  # noqa: N802
                               context: grpc.aio.ServicerContext) -> pb.DeviceLogin:
        await self._admin(context)
        try:
            code = await self._manager.start_device_login(request.login)
        except LoginError as exc:
            log.warning("auth api: %s device login not started: %s", request.login, exc)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION if request.login in self._manager.flows
                         else grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("auth api: %s device login started", request.login)
        return pb.DeviceLogin(verification_uri=code.verification_uri, user_code=code.user_code,
                              expires_in=device.whole_seconds(code.expires_at - time.time()),
                              interval=device.whole_seconds(code.interval), id=self._sealer.seal(code))

    async def PollDeviceLogin(self, request: pb.PollDeviceLoginRequest,  # noqa: N802
                              context: grpc.aio.ServicerContext) -> pb.DeviceLoginStatus:
        await self._admin(context)
        try:
            code = self._sealer.open(request.id, request.login)
            result = await self._manager.poll_device_login(code)
        except device.HandleRefused as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LoginError as exc:
            log.warning("auth api: %s device login failed: %s", request.login, exc)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if isinstance(result, device.Ended):
            log.warning("auth api: %s device login ended: %s", request.login, result.reason)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, result.message)
        if isinstance(result, device.Waiting):
            if result.trouble:
                log.warning("auth api: %s device login: %s; the client polls again", request.login, result.trouble)
            code = device.waited(code, result)
            return pb.DeviceLoginStatus(pending=True, interval=device.whole_seconds(code.interval),
                                        id=self._sealer.seal(code) if result.slowed else request.id)
        return pb.DeviceLoginStatus(pending=False, account=self._message(result))

    async def Callback(self, request: pb.CallbackRequest, context: grpc.aio.ServicerContext  # noqa: N802
                       ) -> httpbody_pb2.HttpBody:
        if request.error or not request.code:
            log.warning("auth api: a login's redirect brought no code: %s", request.error or "nothing")
            return _page("Login failed", f"The provider said: {request.error or 'no code'}.")
        try:
            account = await self._manager.finish_login(request.code, request.state)
        except (LoginError, LoginExpired) as exc:
            log.warning("auth api: a login's redirect did not finish it: %s", exc)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        who = account.email or account.id
        return _page("Logged in", f"{who} is logged in to {self._manager.flow(account.kind).title}. "
                                  "You can close this window.")

    async def ListAccounts(self, request: pb.ListAccountsRequest, context: grpc.aio.ServicerContext  # noqa: N802
                           ) -> pb.AccountList:
        await self._admin(context)
        return pb.AccountList(accounts=[self._message(a) for a in self._manager.accounts()])

    async def RemoveAccount(self, request: pb.AccountRequest, context: grpc.aio.ServicerContext  # noqa: N802
                            ) -> pb.RemoveAccountResponse:
        await self._admin(context)
        try:
            removed = await self._manager.remove(request.id)
        except StoreError as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if not removed:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no account {request.id}")
        log.info("auth api: account %s removed", request.id)
        return pb.RemoveAccountResponse(removed=True)

    async def RefreshAccount(self, request: pb.AccountRequest, context: grpc.aio.ServicerContext  # noqa: N802
                             ) -> pb.Account:
        await self._admin(context)
        try:
            account = await self._manager.force_refresh(request.id)
        except LoginError as exc:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except CredentialUnavailable as exc:
            log.warning("auth api: account %s not refreshed: %s", request.id, exc.reason)
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, exc.reason)
        return self._message(account)

    async def _admin(self, context: grpc.aio.ServicerContext) -> None:
        """Fail closed: no admin token configured means no admin API."""
        if not self._admin_token:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                         "the /auth API is off: set auth.admin_token in the config")
        sent = dict(context.invocation_metadata() or ()).get("authorization", "")
        scheme, _, token = sent.strip().partition(" ") if isinstance(sent, str) else ("", "", "")
        if scheme.lower() != "bearer":
            token = ""
        if not hmac.compare_digest(token.encode(), self._admin_token.encode()):
            log.warning("auth api: refused a call without the admin token (from %s)", context.peer())
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, "send Authorization: Bearer <auth.admin_token>")

    def _message(self, account: Account) -> pb.Account:
        flow = self._manager.flows.get(account.kind)
        message = pb.Account(id=account.id, login=account.kind, provider=flow.provider if flow else "",
                             status=account.status)
        for name in ("email", "plan", "status_reason"):
            value = getattr(account, name)
            if value:
                setattr(message, name, value)
        if account.expires_at is not None:
            message.expires_at = rfc3339(account.expires_at)
        if account.windows is not None:
            message.windows.extend(window_messages(account.windows))
            message.exhausted = account.windows.exhausted
            if account.windows_at is not None:
                message.windows_at = rfc3339(account.windows_at)
        return message


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


def _page(title: str, text: str) -> httpbody_pb2.HttpBody:
    body = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8", data=body.encode())
