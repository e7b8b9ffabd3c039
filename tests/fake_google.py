"""Fakes of Google Cloud for Vertex AI: a service account whose key the test generates, a token endpoint that checks
what Google's checks (a JWT assertion signed by that key, for itself, unexpired, asking the cloud-platform scope)
before it issues an access token, and a Vertex AI that takes only a token it issued, on a Gemini model's path of
its project and location. Nothing here prints or logs a token or the key."""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests import secrets_registry
from tests.fakes import Answer, FakeProvider, Recorded, messages_stream, serve_whole, success_body

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"
CLAUDE_VERSION = "vertex-2023-10-16"
# Beta flags Vertex AI serves on Claude (an Anthropic-only one, such as oauth, fails the request).
SERVED_BETAS = frozenset({"claude-code-20250219", "interleaved-thinking-2025-05-14", "context-1m-2025-08-07",
                          "context-management-2025-06-27", "web-search-2025-03-05", "tool-search-tool-2025-10-19"})
AUDIENCE = "https://oauth2.googleapis.com/token"  # what an assertion is for, whatever token_uri it was sent to


@dataclass(frozen=True)
class ServiceAccount:
    """A service account and its key: the JSON key file Google would hand out, and the public half to check."""

    email: str
    key_id: str
    public_key: rsa.RSAPublicKey
    file: Path


def make_service_account(directory: Path, token_uri: str, name: str = "gateway") -> ServiceAccount:
    """A new RSA key, written as a service account's JSON key file whose token_uri is `token_uri`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    for line in pem.splitlines()[1:-1]:
        secrets_registry.secret("service account private key", line)
    email = f"{name}@test-project.iam.gserviceaccount.com"
    key_id = os.urandom(20).hex()
    file = directory / f"{name}-key.json"
    file.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": key_id, "private_key": pem,
        "client_email": email, "client_id": "1234567890", "token_uri": token_uri,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth"}))
    return ServiceAccount(email, key_id, key.public_key(), file)


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _error(status: int, error: str, description: str) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(
        {"error": error, "error_description": description}).encode()


class FakeGoogleToken:
    """Google's OAuth token endpoint for service accounts (the JWT-bearer grant, RFC 7523)."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.accounts: dict[str, ServiceAccount] = {}  # email → its account
        self.issued: list[str] = []  # every access token, oldest first
        self.revoked: set[str] = set()  # tokens Vertex refuses before their expiry
        self.refusals = 0
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.server = serve_whole(self._answer)
        self.token_uri = f"http://127.0.0.1:{self.server.server_address[1]}{TOKEN_PATH}"

    def trust(self, account: ServiceAccount) -> None:
        self.accounts[account.email] = account

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def valid(self, token: str) -> bool:
        with self._lock:
            return token in self.issued and token not in self.revoked

    def revoke(self, token: str) -> None:
        """Vertex refuses it from now on (revoked, or the service account's key rotated)."""
        with self._lock:
            self.revoked.add(token)

    def _answer(self, recorded: Recorded) -> Answer:
        answer = self._check(recorded)
        if answer[0] != 200:
            with self._lock:
                self.refusals += 1
        return answer

    def _check(self, recorded: Recorded) -> Answer:
        if recorded.method != "POST" or recorded.path != TOKEN_PATH:
            return _error(404, "not_found", "no such endpoint")
        form = dict(parse_qsl(recorded.body.decode()))
        if form.get("grant_type") != JWT_BEARER or "assertion" not in form:
            return _error(400, "unsupported_grant_type", "Invalid grant_type")
        try:
            head, body, signature = form["assertion"].split(".")
            header, claims = json.loads(_b64(head)), json.loads(_b64(body))
        except ValueError:
            return _error(400, "invalid_grant", "Invalid JWT.")
        account = self.accounts.get(claims.get("iss", ""))
        if account is None or header.get("alg") != "RS256" or header.get("kid") != account.key_id:
            return _error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            account.public_key.verify(_b64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
        except InvalidSignature:
            return _error(400, "invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        if claims.get("aud") != AUDIENCE or not claims.get("iat", now + 1) <= now + 5 < claims.get("exp", 0) \
                or SCOPE not in str(claims.get("scope", "")).split():
            return _error(400, "invalid_grant", "Invalid JWT: bad audience, time or scope.")
        token = f"ya29.fake-vertex-token-{next(self._serial)}-{os.urandom(12).hex()}"
        secrets_registry.secret("google access token", token)
        with self._lock:
            self.issued.append(token)
        return 200, {"content-type": "application/json"}, json.dumps(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}).encode()


class FakeVertex(FakeProvider):
    """Vertex AI: a bearer the token endpoint issued (401 UNAUTHENTICATED otherwise), and a Gemini model's path
    under its project and location (404 otherwise); then it answers as Gemini does."""

    def __init__(self, tokens: FakeGoogleToken, project: str, location: str, models: tuple[str, ...]) -> None:
        super().__init__("vertex")
        self.tokens, self.project, self.location, self.models = tokens, project, location, models

    def prefix(self) -> str:
        return f"/v1/projects/{self.project}/locations/{self.location}/publishers/google/models/"

    def claude_prefix(self) -> str:
        return f"/v1/projects/{self.project}/locations/{self.location}/publishers/anthropic/models/"

    def refusal(self, recorded: Recorded) -> Answer | None:
        bearer = recorded.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or not self.tokens.valid(bearer[len("Bearer "):]) \
                or "x-goog-api-key" in recorded.headers:
            return _status(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        bare = unquote(recorded.path.partition("?")[0])
        if bare.startswith(self.claude_prefix()):
            return self._claude_refusal(bare, recorded)
        model, _, method = bare.removeprefix(self.prefix()).partition(":")
        if not bare.startswith(self.prefix()) or method not in ("generateContent", "streamGenerateContent",
                                                                 "countTokens"):
            return _status(404, "NOT_FOUND", "The requested URL was not found on this server.")
        if model not in self.models:
            return _status(404, "NOT_FOUND", f"Publisher Model `projects/{self.project}/locations/{self.location}"
                                             f"/publishers/google/models/{model}` was not found.")
        return None


    def _claude_refusal(self, bare: str, recorded: Recorded) -> Answer | None:
        """Claude on Vertex: the model's :rawPredict or :streamRawPredict, the Messages body without `model` and
        with Vertex's anthropic_version."""
        model, _, method = bare.removeprefix(self.claude_prefix()).partition(":")
        if method not in ("rawPredict", "streamRawPredict"):
            return _status(404, "NOT_FOUND", "The requested URL was not found on this server.")
        doc = json.loads(recorded.body or b"{}")
        counting = model == "count-tokens"  # a token count names its model in the body, a completion in the path
        if counting:
            if method != "rawPredict" or not doc.get("messages"):
                return _status(400, "INVALID_ARGUMENT", "A count takes messages, at count-tokens:rawPredict.")
            model = str(doc.get("model"))
        if model not in self.models:
            return _status(404, "NOT_FOUND", f"Publisher Model `projects/{self.project}/locations/{self.location}"
                                             f"/publishers/anthropic/models/{model}` was not found.")
        unserved = [f.strip() for f in recorded.headers.get("anthropic-beta", "").split(",")
                    if f.strip() and (counting or f.strip() not in SERVED_BETAS)]  # its count call takes none
        if unserved:
            return 400, {"content-type": "application/json"}, json.dumps({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": f"Unexpected value(s) `{','.join(unserved)}` for the `anthropic-beta` header."}}).encode()
        if doc.get("anthropic_version") != CLAUDE_VERSION or ("model" in doc) != counting:
            return 400, {"content-type": "application/json"}, json.dumps({"type": "error", "error": {
                "type": "invalid_request_error", "message": "anthropic_version: vertex-2023-10-16 is required, and "
                                                           "model: Extra inputs are not permitted"}}).encode()
        return None

    def _answer(self, path: str, body: bytes) -> Answer:
        """Claude's answers as Anthropic's API gives them (a stream for :streamRawPredict); Gemini's otherwise."""
        bare = unquote(path.partition("?")[0])
        with self._lock:
            scripted = bool(self._script)
        if scripted or not bare.startswith(self.claude_prefix()):
            return super()._answer(path, body)
        model = bare.removeprefix(self.claude_prefix()).partition(":")[0]
        if model == "count-tokens":
            counted = {"input_tokens": len(json.dumps(json.loads(body)["messages"]))}  # a count that reads the body
            return 200, {"content-type": "application/json"}, json.dumps(counted).encode()
        if bare.endswith(":streamRawPredict"):
            return 200, {"content-type": "text/event-stream"}, messages_stream(model)
        whole = success_body("/messages", {"model": model})
        return 200, {"content-type": "application/json"}, json.dumps(whole).encode()


def _status(code: int, status: str, message: str) -> Answer:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "status": status}}
    return code, {"content-type": "application/json"}, json.dumps(body).encode()
