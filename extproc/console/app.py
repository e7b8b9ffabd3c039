"""The web console: an aiohttp application mounted under /console on each worker's relay server.

(A reduced form — sign-in and the Accounts page — of the console's application; the console's own module is the
one to keep.) Envoy reaches it through the relay cluster on one direct route (`/console`), presenting the
processor token as it does to the relay; any worker answers any page (the session is sealed, not stored).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from extproc.console.accounts import add_account_routes
from extproc.console.context import CONSOLE_KEY, Console, console_of
from extproc.console.session import csrf_ok, origin_of, same_origin
from extproc.core.headers import RELAY_HEADERS

log = logging.getLogger("extproc.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[_trusted, _signed_in])
    app[CONSOLE_KEY] = console
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _sign_in)
    add_account_routes(app)
    return app


async def _login_page(request: web.Request) -> web.StreamResponse:
    return console_of(request).render(request, "login.html", page="login", wrong=False)


async def _sign_in(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    if not same_origin(request.headers.get("origin"), origin_of(request)):
        return web.Response(status=403, text="refused: another origin")
    given = (await request.post()).get("token")
    response = web.HTTPSeeOther("/console/accounts")
    if isinstance(given, str) and console.gate.sign_in(request, given, response):
        return response
    return console.render(request, "login.html", status=401, page="login", wrong=True)


@web.middleware
async def _trusted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only Envoy may send here: it presents the processor token, as to the relay."""
    token = console_of(request).processor_token
    sent = request.headers.get(RELAY_HEADERS[0], "")
    if token is not None and not hmac.compare_digest(sent.encode(), token.encode()):
        return web.Response(status=403, text="forbidden")
    return await handler(request)


@web.middleware
async def _signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but sign-in needs a session; every POST its CSRF token and own origin."""
    console = console_of(request)
    if not console.gate.enabled():
        return web.Response(status=403, text="the console is off: set auth.admin_token")
    if request.path == "/console/login":
        return await handler(request)
    session = console.gate.session(request)
    if session is None:
        raise web.HTTPSeeOther("/console/login")
    request["session"] = session
    if request.method == "POST":
        csrf = (await request.post()).get("csrf")
        if not isinstance(csrf, str) or not csrf_ok(session, csrf, request.headers.get("origin"),
                                                    origin_of(request)):
            log.warning("console: refused a form without this session's CSRF token or from another origin")
            return web.Response(status=403, text="refused: no CSRF token of this session")
    response = await handler(request)
    response.headers["cache-control"] = "no-store"
    return response
