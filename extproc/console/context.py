"""What every page of the console shares: the gateway's parts it reads, the templates, the static files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from extproc.auth.accounts import AccountManager
from extproc.console.session import Gate, Session
from extproc.runtime import Runtime
from extproc.state.rate_limit import RateLimiter
from extproc.state.spend import SpendLedger
from extproc.state.tokens import LocalTokens, TokenCounter
from extproc.usage.store import UsageStore

PREFIX = "/console"
NAV = (("overview", "Overview", "/console/"), ("accounts", "Accounts", "/console/accounts"),
       ("models", "Models", "/console/models"), ("keys", "Keys", "/console/keys"),
       ("requests", "Requests", "/console/requests"))
STATIC_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "console.css", "console.js")
_TYPES = {".js": "text/javascript", ".css": "text/css"}


@dataclass
class Console:
    """What the pages read: the runtime (registry, health, settings), the client keys' and teams' counters (the
    ones their limits are checked against), the usage store (None: usage is not kept), the logins."""

    runtime: Runtime
    limiter: RateLimiter
    spend: SpendLedger
    tokens: TokenCounter = field(default_factory=LocalTokens)
    usage: UsageStore | None = None
    manager: AccountManager | None = None
    processor_token: str | None = field(default=None, repr=False)
    gate: Gate = field(init=False)
    templates: jinja2.Environment = field(init=False)
    static: dict[str, tuple[bytes, str, str]] = field(init=False)  # name → (content, content type, version)

    def __post_init__(self) -> None:
        runtime = self.runtime
        self.gate = Gate(lambda: runtime.current.settings.admin_token, runtime.clock)
        self.static = static_files()
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("extproc.console", "templates"),
                                            autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.globals["nav"] = NAV
        self.templates.globals["static"] = lambda name: f"{PREFIX}/static/{name}?v={self.static[name][2]}"

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        """A page; the session's CSRF token goes into its forms."""
        session = request.get(SESSION_KEY)
        context.setdefault("page", "")  # which nav entry is the current page: none on sign-in and refusals
        html = self.templates.get_template(template).render(csrf=session.csrf if session else "",
                                                            signed_in=session is not None, **context)
        return web.Response(status=status, text=html, content_type="text/html")


CONSOLE_KEY = web.AppKey("console", Console)
SESSION_KEY = web.RequestKey("session", Session)  # the request's session, once the sign-in check has read it


def console_of(request: web.Request) -> Console:
    return request.config_dict[CONSOLE_KEY]


def static_files() -> dict[str, tuple[bytes, str, str]]:
    """The vendored and own assets, read once, each with a version (its content's hash) for its URL."""
    root = resources.files("extproc.console") / "static"
    out = {}
    for name in STATIC_FILES:
        content = (root / name).read_bytes()
        out[name] = (content, _TYPES[name[name.rindex("."):]], hashlib.sha256(content).hexdigest()[:12])
    return out


def see_other(location: str) -> web.Response:
    """After a form, or to the sign-in page: the browser GETs `location`."""
    return web.Response(status=303, headers={"location": location})
