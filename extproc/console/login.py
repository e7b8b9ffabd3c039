"""Signing in to the console with the admin token, and out; the page shown while no admin token is set."""

from __future__ import annotations

from aiohttp import web

from extproc.console.context import console_of, see_other
from extproc.console.session import Gate, origin_of, same_origin


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", sign_in)
    app.router.add_post("/logout", sign_out)


async def login_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    if console.gate.session(request) is not None:
        return see_other("/console/")
    return console.render(request, "login.html", page="login", wrong=False)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """The admin token from the form; a wrong one gets 401 and the form again, saying so."""
    console = console_of(request)
    if not same_origin(request.headers.get("origin"), origin_of(request)):
        return console.render(request, "refused.html", status=403)
    form = await request.post()
    given = form.get("token")
    response = see_other("/console/")
    if isinstance(given, str) and console.gate.sign_in(request, given, response):
        return response
    return console.render(request, "login.html", status=401, page="login", wrong=True)


async def sign_out(request: web.Request) -> web.StreamResponse:
    """A POST with the session's CSRF token (checked before it gets here)."""
    response = see_other("/console/login")
    Gate.sign_out(response)
    return response
