"""The web console: an aiohttp application mounted under /console on each worker's relay server.

Envoy reaches it through the relay cluster on one direct route of the main listener (`/console`), presenting the
processor token as it does to the relay; so there is no port of its own, and any worker answers any page (the
session is sealed, not stored). Every page is rendered on the server (Jinja2, autoescaped); htmx and uPlot,
vendored in `static/`, only enhance them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping

from aiohttp import web

from extproc.console import login, pages
from extproc.console.accounts import add_account_routes
from extproc.console.context import CONSOLE_KEY, SESSION_KEY, Console, console_of, see_other
from extproc.console.session import csrf_ok, origin_of
from extproc.core.headers import RELAY_HEADERS

log = logging.getLogger("extproc.console")
TOKEN_HEADER = RELAY_HEADERS[0]  # the relay's: Envoy presents the processor token in it
# Scripts and styles from the console's own files only: no inline script, no eval (htmx is told so), no framing.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
_OPEN = ("/console/login", "/console/static/")  # reachable without a session

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_app(console: Console) -> web.Application:
    """The application to mount at /console (before the relay's catch-all: a path it has no page for is its 404,
    never the relay's)."""
    app = web.Application(middlewares=[_trusted, _secured, _signed_in])
    app[CONSOLE_KEY] = console
    app.router.add_get("/static/{name}", _static)
    login.add_routes(app)
    pages.add_routes(app)
    add_account_routes(app)
    return app


async def _static(request: web.Request) -> web.StreamResponse:
    found = console_of(request).static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    content, kind, _ = found
    # Pages name each file with its content's hash (?v=), so a cached copy is never stale.
    return web.Response(body=content, content_type=kind,
                        headers={"cache-control": "public, max-age=31536000, immutable"})


@web.middleware
async def _trusted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only Envoy may send here: it presents the processor token, as to the relay."""
    token = console_of(request).processor_token
    if token is not None and not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        log.warning("console: refused a request without the processor token (from %s)", request.remote)
        return web.Response(status=403, text="forbidden")
    return await handler(request)


@web.middleware
async def _secured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer: the security headers; every page: never cached (a page of figures, never shared)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc.headers)
        raise
    _secure(request, response.headers)
    return response


def _secure(request: web.Request, headers: MutableMapping[str, str]) -> None:
    headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/console/static/"):
        headers["cache-control"] = "no-store"


@web.middleware
async def _signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but sign-in and the static files needs a session; every POST its CSRF token and own origin."""
    console = console_of(request)
    if request.path.startswith("/console/static/"):
        return await handler(request)
    if not console.gate.enabled():
        return console.render(request, "off.html", status=403)
    if request.path.startswith(_OPEN):
        return await handler(request)
    session = console.gate.session(request)
    if session is None:
        if request.path.startswith("/console/api/"):
            return web.json_response({"error": "sign in at /console/login"}, status=401)
        return see_other("/console/login")
    request[SESSION_KEY] = session
    if request.method == "POST":
        form = await request.post()
        csrf = form.get("csrf")
        if not isinstance(csrf, str) or not csrf_ok(session, csrf, request.headers.get("origin"),
                                                    origin_of(request)):
            log.warning("console: refused a form without this session's CSRF token or from another origin")
            return console.render(request, "refused.html", status=403)
    return await handler(request)
