"""What every page of the console shares: the gateway's parts it reads and the templates.

(A reduced form of the console's shared context, enough for the Accounts page; the console's own module is the
one to keep.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web

from extproc.auth.accounts import AccountManager
from extproc.console.session import Gate, Session
from extproc.runtime import Runtime

PREFIX = "/console"
NAV = (("overview", "Overview", "/console/"), ("accounts", "Accounts", "/console/accounts"),
       ("models", "Models", "/console/models"), ("keys", "Keys", "/console/keys"),
       ("requests", "Requests", "/console/requests"))


@dataclass
class Console:
    runtime: Runtime
    manager: AccountManager | None = None
    processor_token: str | None = field(default=None, repr=False)
    gate: Gate = field(init=False)
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        runtime = self.runtime
        self.gate = Gate(lambda: runtime.current.settings.admin_token, runtime.clock)
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("extproc.console", "templates"),
                                            autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.globals["nav"] = NAV
        self.templates.globals["static"] = lambda name: f"{PREFIX}/static/{name}"

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        """A page; the session's CSRF token goes into its forms."""
        session: Session | None = request.get("session")
        html = self.templates.get_template(template).render(csrf=session.csrf if session else "",
                                                            signed_in=session is not None, **context)
        return web.Response(status=status, text=html, content_type="text/html")


CONSOLE_KEY = web.AppKey("console", Console)


def console_of(request: web.Request) -> Console:
    return request.config_dict[CONSOLE_KEY]
