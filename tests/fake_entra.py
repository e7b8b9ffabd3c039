"""A fake Microsoft identity platform for Azure OpenAI's Entra ID tokens: the v2.0 token endpoint of a tenant, over
TLS (azure-identity refuses an authority that is not https) with a certificate of a CA the test made, answering the
client-credentials grant as Microsoft's does — the tenant must exist, the application must be registered in it,
its client secret must match, and the scope must be a resource's `/.default` — with an access token for that
resource; anything else gets Microsoft's error, AADSTS code and all. A fake Azure OpenAI then takes a token it
issued, for its audience, as `Authorization: Bearer`. Nothing here prints or logs a token or a secret."""

from __future__ import annotations

import itertools
import json
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from tests import secrets_registry
from tests.certs import make_leaf
from tests.fakes import Answer, Recorded, serve_whole

AUDIENCE = "https://cognitiveservices.azure.com"  # Azure OpenAI's (Cognitive Services') resource
SCOPE = AUDIENCE + "/.default"
CLIENT_CREDENTIALS = "client_credentials"


@dataclass(frozen=True)
class Application:
    """An app registration: its tenant, its (client) id, and the value of one of its client secrets."""

    tenant_id: str
    client_id: str
    client_secret: str


def make_application(name: str = "gateway") -> Application:
    """A new tenant, application and client secret (the secret registered with the secret scan)."""
    secret = f"{name}~{os.urandom(18).hex()}"  # Entra ID's secrets look like 'Abc8Q~…'
    secrets_registry.secret("entra client secret", secret)
    return Application(_guid(), _guid(), secret)


def _guid() -> str:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _error(status: int, error: str, code: int, description: str) -> Answer:
    """Microsoft's error body: the OAuth error, and a description that starts with its AADSTS code."""
    return status, {"content-type": "application/json; charset=utf-8"}, json.dumps(
        {"error": error, "error_description": f"AADSTS{code}: {description}", "error_codes": [code],
         "trace_id": _guid(), "correlation_id": _guid()}).encode()


class FakeEntra:
    """login.microsoftonline.com's token endpoint, `/{tenant}/oauth2/v2.0/token`, on https://127.0.0.1:port."""

    def __init__(self, folder: Path, expires_in: int = 3599) -> None:
        self.expires_in = expires_in
        self.applications: dict[tuple[str, str], Application] = {}  # (tenant, client id) → its registration
        self.issued: dict[str, str] = {}  # every access token → its audience, oldest first
        self.refusals = 0
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        leaf = make_leaf(folder, ("127.0.0.1",), ca_name="fake Microsoft identity platform CA")
        self.ca_file = leaf.ca_file  # what a client must trust to reach it
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(leaf.cert_file, leaf.key_file)
        self.server = serve_whole(self._answer, tls=context)
        self.authority = f"https://127.0.0.1:{self.server.server_address[1]}"

    def register(self, application: Application) -> None:
        self.applications[(application.tenant_id, application.client_id)] = application

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def tokens(self) -> list[str]:
        with self._lock:
            return list(self.issued)

    def valid_for(self, audience: str, token: str) -> bool:
        with self._lock:
            return self.issued.get(token) == audience

    def _answer(self, recorded: Recorded) -> Answer:
        answer = self._check(recorded)
        if answer[0] != 200:
            with self._lock:
                self.refusals += 1
        return answer

    def _check(self, recorded: Recorded) -> Answer:
        tenant, _, rest = recorded.path.lstrip("/").partition("/")
        if recorded.method != "POST" or rest != "oauth2/v2.0/token":
            return _error(404, "invalid_request", 90002, "no such endpoint of the Microsoft identity platform.")
        if tenant not in {t for t, _ in self.applications}:
            return _error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        form = dict(parse_qsl(recorded.body.decode()))
        if form.get("grant_type") != CLIENT_CREDENTIALS:
            return _error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        application = self.applications.get((tenant, form.get("client_id", "")))
        if application is None:
            return _error(400, "unauthorized_client", 700016, f"Application with identifier "
                          f"'{form.get('client_id')}' was not found in the directory '{tenant}'.")
        if form.get("client_secret") != application.client_secret:
            return _error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                          "sent in the request is the client secret value, not the client secret ID.")
        scopes = form.get("scope", "").split()
        resources = [s.removesuffix("/.default") for s in scopes if s.endswith("/.default")]
        if len(resources) != 1 or len(scopes) != 1:
            return _error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not "
                          "valid. Client credential flows must have a scope value with /.default suffixed to the "
                          "resource identifier (application ID URI).")
        token = f"eyJ0eXAiOiJKV1QifQ.fake-entra-{next(self._serial)}-{os.urandom(12).hex()}"
        secrets_registry.secret("entra access token", token)
        with self._lock:
            self.issued[token] = resources[0]
        return 200, {"content-type": "application/json; charset=utf-8"}, json.dumps(
            {"token_type": "Bearer", "expires_in": self.expires_in, "ext_expires_in": self.expires_in,
             "access_token": token}).encode()
