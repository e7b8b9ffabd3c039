"""OAuth login facts as types (the data is extproc/data/oauth.yaml, overridable under `oauth:` in config)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from extproc.core.providers import AuthStyle


@dataclass(frozen=True, slots=True)
class WindowLimit:
    """One usage window a subscription reports on each answer: how full it is, and when it resets."""

    utilization: str  # the header with its fill level
    reset: str  # the header with its reset time (unix seconds)
    scale: float = 1.0  # the level's full value (1 for a fraction, 100 for a percentage)
    name: str = ""  # how `extproc auth list` and the Models API call it (5h, 7d, primary, …)
    minutes: str | None = None  # the header with the window's length in minutes: it names the window (5h, 7d)


@dataclass(frozen=True, slots=True)
class Credits:
    """Headers that say a full window does not stop the subscription: credits to spend, or no limit at all."""

    has: str  # true: the account has credits left
    unlimited: str  # true: it is not limited


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """An event of the answer's stream that reports the windows as the headers do (Codex's codex.rate_limits)."""

    type: str  # the event's `type`
    fields: Mapping[str, str]  # a dotted path in the event → the header it is read as


@dataclass(frozen=True, slots=True)
class Windows:
    limits: tuple[WindowLimit, ...]
    status_header: str | None = None  # a header that says the subscription refused outright
    exhausted: frozenset[str] = frozenset()  # its values that mean so
    credits: Credits | None = None
    event: WindowEvent | None = None

    @property
    def headers(self) -> tuple[str, ...]:
        named = [h for limit in self.limits for h in (limit.utilization, limit.reset, limit.minutes) if h]
        credits = [self.credits.has, self.credits.unlimited] if self.credits else []
        return (*([self.status_header] if self.status_header else []), *named, *credits)


@dataclass(frozen=True, slots=True)
class OwnClient:
    """The one client whose requests a login serves: a subscription its vendor serves to its own client only
    (Claude Pro/Max to Claude Code), known by how that client's system prompt starts (its billing block)."""

    name: str  # as errors and docs name it: Claude Code
    system_starts: str  # its requests' first system text starts with this
    setting: str  # the config key that lets other clients' requests use the login (named in errors)


@dataclass(frozen=True, slots=True)
class Usage:
    """How a request carries a login."""

    auth: AuthStyle
    headers: Mapping[str, str] = field(default_factory=dict)  # set when the client did not send them
    merge_headers: Mapping[str, str] = field(default_factory=dict)  # joined with the client's values
    account_header: str | None = None  # carries Account.account_id
    windows: Windows | None = None  # the subscription's usage windows, read from its answers


@dataclass(frozen=True, slots=True)
class Device:
    """A login's device-code variant: the user types a short code on another machine's browser while we poll."""

    style: str  # rfc8628 (RFC 8628, e.g. GitHub) | openai (OpenAI's device auth, then a code exchange)
    code_url: str  # where the device and user codes are asked for
    poll_url: str  # polled until the user approved
    verify_url: str | None = None  # the page the user opens, when the code answer does not name it
    redirect_uri: str | None = None  # openai: the redirect_uri of the final code exchange


DEVICE_STYLES = ("rfc8628", "openai")


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    title: str
    provider: str
    upstream: str
    authorize_url: str | None  # None: a device-code-only login
    token_url: str
    token_format: str  # json | form
    refresh_format: str
    client_id: str
    scopes: tuple[str, ...]
    authorize_params: Mapping[str, str]
    use: Usage
    client_secret: str | None = field(default=None, repr=False)
    hosted_redirect: str | None = None
    loopback_port: int | None = None
    loopback_path: str = "/callback"
    create_api_key_url: str | None = None
    userinfo_url: str | None = None
    code_assist_url: str | None = None
    project: str | None = None  # Code Assist: a Google Cloud project for accounts whose tier needs one
    refusals: Mapping[str, str] = field(default_factory=dict)  # Code Assist: an ineligible tier's reason → what to do
    refresh_params: Mapping[str, str] = field(default_factory=dict)  # extra fields of a refresh request
    refresh_scope: bool = False  # a refresh asks for the scopes the login was granted (when known)
    own_client: OwnClient | None = None  # the client whose requests alone the login serves (unless other_clients)
    other_clients: str = "send"  # refuse: the login is no candidate for another client's request | send
    device: Device | None = None  # the device-code variant, when the login has one
    exchange_url: str | None = None  # a login token is exchanged here for what requests carry (an editor's Copilot)
    quota_url: str | None = None  # where the login's plan quotas are read, as windows (Copilot)

    @property
    def pasted_redirect(self) -> str:
        """Where a login whose code is pasted back sends the browser: the provider's page that shows the code, or
        the loopback address (nothing answers there; the user pastes the address the browser ended on)."""
        return self.hosted_redirect or f"http://localhost:{self.loopback_port or 1455}{self.loopback_path}"

    def authorize_link(self, redirect_uri: str, state: str, challenge: str) -> str:
        if self.authorize_url is None:
            raise ValueError(f"{self.name} logs in by device code only")
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                  "scope": " ".join(self.scopes), "code_challenge": challenge, "code_challenge_method": "S256",
                  "state": state, **self.authorize_params}
        return f"{self.authorize_url}?{urlencode(params)}"


def merged_header_names(flows: Mapping[str, Flow]) -> frozenset[str]:
    """The headers some login joins its values to a client's in (`merge_headers`): a fast route keeps the client's
    own value of each for the attempts after the first."""
    return frozenset(name for flow in flows.values() for name in flow.use.merge_headers)
