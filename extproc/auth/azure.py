"""Microsoft Entra ID tokens for Azure OpenAI credentials (`Credential.entra`): azure-identity's asynchronous
credentials (an application's client secret or certificate, or its default chain: environment, workload identity,
managed identity, the Azure CLI), one per credential for the life of the process, asked again ahead of expiry in the
background, one call in flight. Every other credential's secret comes from the source it wraps. A token and a client
secret are never logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import CloudSecrets, SecretSource
from extproc.core.settings import Credential, EntraAuth

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncSupportsTokenInfo

log = logging.getLogger("extproc.auth")

# azure-identity itself renews a token this long before its expiry, and asks its endpoint at most this often while
# the token it holds is good: asked sooner, it answers the same token, so it is not asked again before this.
_RECHECK = 30.0
_TIMEOUTS = {"connection_timeout": 10, "read_timeout": 30}  # s: a token request never holds a request for minutes


@dataclass(slots=True)
class _Held:
    """One Entra ID credential's current token, when to ask for a newer one, and the call in flight."""

    token: str = ""
    expires_at: float = 0.0
    due_at: float = 0.0
    refreshing: asyncio.Task[str] | None = None


class EntraTokens(CloudSecrets):
    """A SecretSource: Azure OpenAI credentials' Entra ID tokens, every other secret from `inner`."""

    def __init__(self, inner: SecretSource, ca_file: str | None = None, skew: float = 300.0,
                 clock: Callable[[], float] = time.time,
                 make: Callable[[EntraAuth, str | None], AsyncSupportsTokenInfo] | None = None) -> None:
        super().__init__(inner)
        self._ca_file, self._skew, self._clock = ca_file, skew, clock
        self._make = make or azure_credential
        self._held: dict[EntraAuth, _Held] = {}
        self._credentials: dict[EntraAuth, AsyncSupportsTokenInfo] = {}

    async def secret(self, credential: Credential) -> str:
        auth = credential.entra
        if auth is None:
            return await self._inner.secret(credential)
        held = self._held.setdefault(auth, _Held())
        now = self._clock()
        if held.token and held.expires_at - now > min(60.0, self._skew):
            if now >= held.due_at:
                self._refresh(credential.id, held, auth)  # ahead of expiry: no request waits on it
            return held.token
        try:
            return await asyncio.shield(self._refresh(credential.id, held, auth))
        except CredentialUnavailable:
            raise
        except Exception as exc:  # the call failed in an unforeseen way: still never sent without a token
            raise CredentialUnavailable(f"no Entra ID token for {credential.id}: {type(exc).__name__}",
                                        permanent=False) from None

    def _refresh(self, credential_id: str, held: _Held, auth: EntraAuth) -> asyncio.Task[str]:
        """The one call in flight for this credential (started if none is)."""
        if held.refreshing is None or held.refreshing.done():
            held.refreshing = asyncio.get_running_loop().create_task(self._fetch(credential_id, held, auth))
            held.refreshing.add_done_callback(_retrieved)
        return held.refreshing

    async def _fetch(self, credential_id: str, held: _Held, auth: EntraAuth) -> str:
        from azure.core.exceptions import AzureError  # loaded with the credential (azure_credential)

        try:
            if auth not in self._credentials:
                self._credentials[auth] = self._make(auth, self._ca_file)
            found = await self._credentials[auth].get_token_info(auth.scope)
        except (AzureError, ValueError, OSError) as exc:
            reason = f"no Entra ID token for {credential_id}: {_said(exc)}"
            log.warning("%s", reason)
            raise CredentialUnavailable(reason, permanent=False) from None
        now = self._clock()
        fresh = found.token != held.token
        held.token, held.expires_at = found.token, float(found.expires_on)
        due = held.expires_at - self._skew
        if found.refresh_on is not None:  # the endpoint said when to renew it (a long-lived token's half-life)
            due = min(due, float(found.refresh_on))
        held.due_at = max(due, now + _RECHECK) if not fresh or due <= now else due
        if fresh:
            log.info("%s: Entra ID token refreshed, good for %.0f s", credential_id, held.expires_at - now)
        return held.token

    async def aclose(self) -> None:
        """Close the credentials' HTTP sessions (azure-identity's asynchronous credentials hold one each)."""
        for found in self._credentials.values():
            await found.close()
        self._credentials.clear()

    def owns(self, credential: Credential) -> bool:
        return credential.entra is not None  # a refused token (a missing role): its next comes at expiry


def azure_credential(auth: EntraAuth, ca_file: str | None = None) -> AsyncSupportsTokenInfo:
    """azure-identity's credential for these settings: the application's secret or certificate, else its default
    chain (AZURE_* variables, workload identity, managed identity, the Azure CLI…). `ca_file`: what the token
    endpoint's certificate is checked against (the gateway's `ca_file`), else the system's. azure-identity is
    imported here, by the first Entra ID credential, not with the module: it costs a process a third of a second,
    which a gateway without Azure should not pay."""
    from azure.identity.aio import CertificateCredential, ClientSecretCredential, DefaultAzureCredential

    common: dict[str, Any] = {**_TIMEOUTS, **({"authority": auth.authority} if auth.authority else {}),
                              **({"connection_verify": ca_file} if ca_file else {})}
    if auth.client_secret is not None:
        if not auth.client_secret:
            raise ValueError("client_secret is empty (its environment variable is unset)")
        return ClientSecretCredential(auth.tenant_id or "", auth.client_id or "", auth.client_secret, **common)
    if auth.client_certificate is not None:
        return CertificateCredential(auth.tenant_id or "", auth.client_id or "",
                                     certificate_path=auth.client_certificate, **common)
    if auth.client_id is not None:  # a user-assigned managed identity, or workload identity's application
        common.update(managed_identity_client_id=auth.client_id, workload_identity_client_id=auth.client_id)
    return DefaultAzureCredential(**common)


def _said(exc: BaseException) -> str:
    """What azure-identity's error says: its first line (the endpoint's AADSTS code and reason), never a payload."""
    said = getattr(exc, "message", None) or (exc.args[0] if exc.args and isinstance(exc.args[0], str) else "")
    first = str(said).strip().splitlines()[0][:300] if str(said).strip() else ""
    return first or type(exc).__name__


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A call ahead of expiry that failed was logged already; its error needs no other reader."""
    if not task.cancelled():
        task.exception()
