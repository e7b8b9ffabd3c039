"""A login's refused attempt, retried on the same login with a refreshed token. Sans-IO.

A login's token can be refused before it expires (revoked, rotated by another client). The internal listener
that sends to the provider retries a 401 once when the attempt carries `x-extproc-login`; this exchange runs
on that retry only (skipped, at no message, on the first try): it refreshes the login's token, single-flight
with every other request that saw the same refusal, and sends the retry with it. A login that cannot be
refreshed is out of rotation and the retry is answered with a 503, which failover sends to the next
candidate. The retry's success confirms the new token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from extproc.core.errors import ClientError, CredentialUnavailable
from extproc.core.headers import API_HEADER
from extproc.core.providers import Api
from extproc.core.settings import Credential
from extproc.request.actions import CONTINUE, Continue, Mutate, Reply, reject
from extproc.request.gateway import Gateway
from extproc.request.mutation import credential_headers

log = logging.getLogger("extproc.request")


class ReauthExchange:
    WANTED_RESPONSE_HEADERS = frozenset({":status"})

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.snapshot = gateway.runtime.current
        self.credential: Credential | None = None

    async def request_headers(self, headers: Mapping[str, str], cred_id: str) -> Mutate | Reply:
        """`cred_id`: the login the attempt carried (the provider listener keeps it in dynamic metadata)."""
        request_id = headers.get("x-request-id", "-")
        api = Api.named(headers.get(API_HEADER, ""))
        registry = self.snapshot.registry
        cred = next((c for creds in registry.credentials.values() for c in creds if c.id == cred_id), None)
        provider = registry.providers.get(cred.route) if cred is not None else None
        if cred is None or provider is None or not cred.refreshable:
            return self._no_retry(api, request_id, f"login {cred_id!r} is no longer configured")
        secrets = self._gateway.secrets
        try:
            secret = await secrets.secret(cred)
            sent = credential_headers(provider, api, cred, secret)
            if all(headers.get(k) == v for k, v in sent.items()):  # the current token was refused: refresh it
                secrets.invalidate(cred)
                secret = await secrets.secret(cred)
            # else another request refreshed it already: the retry goes with that one, no second refresh
        except CredentialUnavailable as exc:
            self._gateway.unavailable(cred, exc)
            return self._no_retry(api, request_id, f"login {cred.id} could not be refreshed")
        self.credential = cred
        log.info("reauth rid=%s credential=%s: its token was refused; retried with a refreshed one", request_id,
                 cred.id)
        return Mutate(credential_headers(provider, api, cred, secret), answer_headers=True)

    def response_headers(self, headers: Mapping[str, str]) -> Continue:
        status = headers.get(":status", "")
        if self.credential is not None and status.startswith("2"):
            self._gateway.secrets.confirm(self.credential)
        return CONTINUE

    @staticmethod
    def _no_retry(api: Api, request_id: str, why: str) -> Reply:
        log.warning("reauth rid=%s: %s; the request goes to its next candidate", request_id, why)
        return reject(api, ClientError(503, "credential_unavailable", "The login planned for this request refused "
                                                                      "its token and could not be refreshed."))

