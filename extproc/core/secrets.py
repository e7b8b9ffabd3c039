"""Where a credential's secret comes from at request time: an API key in the credential, or a login's token from
the account manager (which may refresh it). One protocol for the request path, learning, probing and discovery."""

from __future__ import annotations

from typing import Protocol

from extproc.core.errors import CredentialUnavailable
from extproc.core.settings import Credential
from extproc.core.windows import WindowState


class SecretSource(Protocol):
    """Where a credential's secret comes from at request time (a login's token may need a refresh)."""

    async def secret(self, credential: Credential) -> str: ...

    def invalidate(self, credential: Credential) -> bool:
        """The upstream refused this credential's token (401): True if a fresh one is worth fetching."""

    def confirm(self, credential: Credential) -> None:
        """The upstream took this credential's token."""

    def awaits_confirmation(self, credential: Credential) -> bool:
        """Whether an upstream's success with this credential is news (a token fresh from a refused one)."""

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        """A login's answer reported its subscription's usage windows."""


class StaticSecrets:
    """API keys only: the secret is in the credential."""

    async def secret(self, credential: Credential) -> str:
        if credential.account is not None:
            raise CredentialUnavailable(f"no account manager for login {credential.id}", permanent=False)
        if credential.google is not None:  # fail closed: its secret is a token no key stands in for
            raise CredentialUnavailable(f"no Google token source for {credential.id}", permanent=False)
        if credential.entra is not None:  # the same: an Entra ID token, never the empty key
            raise CredentialUnavailable(f"no Entra ID token source for {credential.id}", permanent=False)
        if credential.aws is not None:  # … or AWS keys no key stands in for
            raise CredentialUnavailable(f"no AWS credential source for {credential.id}", permanent=False)
        return credential.secret

    def invalidate(self, credential: Credential) -> bool:
        return False  # an API key cannot be refreshed; health suspends it

    def confirm(self, credential: Credential) -> None:
        pass

    def awaits_confirmation(self, credential: Credential) -> bool:
        return False

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        pass


class CloudSecrets:
    """The base of a SecretSource for one cloud's credentials (`owns`): a refused one is health's to suspend (its
    next token or keys come from the cloud's library, not from a refresh asked here), and every other credential's
    calls go to the source it wraps."""

    def __init__(self, inner: SecretSource) -> None:
        self._inner = inner

    def owns(self, credential: Credential) -> bool:
        raise NotImplementedError

    def invalidate(self, credential: Credential) -> bool:
        return False if self.owns(credential) else self._inner.invalidate(credential)

    def confirm(self, credential: Credential) -> None:
        if not self.owns(credential):
            self._inner.confirm(credential)

    def awaits_confirmation(self, credential: Credential) -> bool:
        return not self.owns(credential) and self._inner.awaits_confirmation(credential)

    def note_windows(self, credential: Credential, state: WindowState) -> None:
        if not self.owns(credential):
            self._inner.note_windows(credential, state)
