"""The one internal error type; each client API renders it in its own envelope at the edge."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False)  # not frozen: Python sets __traceback__ and notes on exceptions
class ClientError(Exception):
    """A request the gateway refuses. `kind` is a stable machine-readable code."""

    status: int
    kind: str
    message: str
    retry_after: int | None = None
    param: str | None = None
    retryable: bool | None = None  # False: tell SDKs not to retry (nothing changes until the config does)

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.message}"


class ConfigError(Exception):
    """Invalid configuration; the message names the key and the fix."""


class CredentialUnavailable(Exception):
    """A credential's secret cannot be had (a login whose refresh failed). Never carries the secret."""

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
