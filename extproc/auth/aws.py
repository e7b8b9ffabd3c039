"""AWS credentials for Bedrock (`Credential.aws`): botocore's standard chain (environment, the shared config and
credentials files or a named profile, web identity for Kubernetes service accounts, container and instance
metadata), found once per process and refreshed by botocore ahead of expiry. The secret handed to the request
path is the keys that sign it (request/sigv4.py); every other credential's comes from the source it wraps.
Keys are never logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from extproc.core.errors import CredentialUnavailable
from extproc.core.secrets import CloudSecrets, SecretSource
from extproc.core.settings import AwsAuth, Credential
from extproc.request.sigv4 import pack_keys

log = logging.getLogger("extproc.auth")

_RETRY_CHAIN = 10.0  # a chain that found nothing is walked again after this long (the metadata service may be late)


@dataclass(slots=True)
class _Found:
    """One AWS identity's credentials as botocore found them (None: nothing in the chain), and when."""

    credentials: Any = None
    at: float = 0.0
    finding: asyncio.Task[Any] | None = None


class AwsKeys(CloudSecrets):
    """A SecretSource: Bedrock credentials' AWS keys, every other secret from `inner`."""

    def __init__(self, inner: SecretSource, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self._clock = clock
        self._found: dict[AwsAuth, _Found] = {}

    async def secret(self, credential: Credential) -> str:
        auth = credential.aws
        if auth is None:
            return await self._inner.secret(credential)
        found = self._found.setdefault(auth, _Found())
        if found.credentials is None and (not found.at or self._clock() - found.at >= _RETRY_CHAIN):
            await asyncio.shield(self._find(found, auth))
        credentials = found.credentials
        if credentials is None:
            raise CredentialUnavailable(
                f"no AWS credentials for {credential.id}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                f"{'fix profile ' + repr(auth.profile) if auth.profile else 'a profile'}, or a role "
                "(web identity, container or instance)", permanent=False)
        try:
            if getattr(credentials, "refresh_needed", lambda: False)():
                frozen = await asyncio.to_thread(credentials.get_frozen_credentials)  # STS or metadata: blocking
            else:
                frozen = credentials.get_frozen_credentials()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
            reason = f"no AWS credentials for {credential.id}: {type(exc).__name__}"
            log.warning("%s", reason)
            raise CredentialUnavailable(reason, permanent=False) from None
        return pack_keys(frozen.access_key, frozen.secret_key, frozen.token)

    def _find(self, found: _Found, auth: AwsAuth) -> asyncio.Task[Any]:
        """The one walk of the chain in flight for this identity (started if none is)."""
        if found.finding is None or found.finding.done():
            found.finding = asyncio.get_running_loop().create_task(self._walk(found, auth))
        return found.finding

    async def _walk(self, found: _Found, auth: AwsAuth) -> None:
        try:
            found.credentials = await asyncio.to_thread(find_credentials, auth)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            log.warning("AWS credentials for region %s: the chain failed (%s)", auth.region, type(exc).__name__)
            found.credentials = None
        found.at = self._clock()
        if found.credentials is None:
            log.warning("AWS credentials for region %s%s: none found; Bedrock requests fail closed", auth.region,
                        f" (profile {auth.profile})" if auth.profile else "")
        else:
            log.info("AWS credentials for region %s: found (%s)", auth.region, found.credentials.method)

    def owns(self, credential: Credential) -> bool:
        return credential.aws is not None  # refused keys: health's to suspend; botocore refreshes temporary ones


def find_credentials(auth: AwsAuth) -> Any:
    """botocore's credentials for this identity (refreshable ones refresh themselves), or None. Blocking: the
    chain may ask the instance metadata service. botocore's session and signer are imported here, in this thread
    (a quarter of a second), so a gateway without Bedrock never loads them and the event loop never waits on it."""
    import botocore.auth  # noqa: F401  (the signer request/sigv4.py uses on every Bedrock request)
    import botocore.session

    session = botocore.session.Session(profile=auth.profile)
    return session.get_credentials()
