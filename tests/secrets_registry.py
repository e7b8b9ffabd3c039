"""The secret scan's registry: every secret the test session made or used, and every log line and error body it
produced. `tests/test_secret_scan.py` (ordered last by the root conftest.py) fails if any secret is in any text.

Secrets are registered where they are made or sent: the fake OAuth server registers each token, code, API key
and PKCE verifier it handles; the client observer registers each credential a test client sends; and
`harvest(basetemp)` reads the configs (provider keys, client keys, admin and processor tokens, state keys) and
account stores every stack and test wrote under pytest's basetemp. Texts are the `*.log` files there (the stacks'
logs), every record the gateway's loggers (`extproc.*`) write in the test process itself, and every body a test's
client read with an error status or as an event stream (httpx and httpx2 are observed: the openai, anthropic and
google-genai SDKs run on httpx2). Observing changes nothing: clients see the same bytes.

Each secret has a name (`oauth refresh token #3`); failures name secrets, never show them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

MIN_LENGTH = 8  # shorter values ("unused", "mine") are placeholders, and too short to find without false alarms
_CONFIG_SECRETS = frozenset({"api_key", "api_keys", "key", "admin_token", "token", "client_secret"})
_STORE_SECRETS = ("access_token", "refresh_token", "api_key")
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
_BODY_LIMIT = 1 << 20  # bytes kept per body: an error envelope or a test's stream is far smaller


@dataclass
class Registry:
    secrets: dict[str, str] = field(default_factory=dict)  # value → its name
    log_files: set[Path] = field(default_factory=set)
    log_records: list[str] = field(default_factory=list)  # the test process's own log lines
    bodies: list[tuple[str, bytearray]] = field(default_factory=list)  # (which response, what it read)
    _counts: Counter[str] = field(default_factory=Counter)

    def texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) for everything to scan; `where` names a file or a response, never a secret."""
        for path in sorted(self.log_files):
            if path.is_file():
                yield str(path), path.read_text(errors="replace")
        yield "the test process's log records", "\n".join(self.log_records)
        for where, body in self.bodies:
            yield where, body.decode(errors="replace")


REGISTRY = Registry()


def secret(kind: str, value: object) -> None:
    """Register a secret (a string of MIN_LENGTH or more; `${VAR}` references are not values)."""
    if isinstance(value, str) and len(value) >= MIN_LENGTH and "${" not in value and value not in REGISTRY.secrets:
        REGISTRY._counts[kind] += 1
        REGISTRY.secrets[value] = f"{kind} #{REGISTRY._counts[kind]}"


def log_file(path: Path) -> None:
    REGISTRY.log_files.add(Path(path))


def leaks(texts: Iterable[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """(secret name, where) for every secret found in a text (by default, in everything registered)."""
    found = []
    for where, text in REGISTRY.texts() if texts is None else texts:
        found += [(name, where) for value, name in REGISTRY.secrets.items() if value in text]
    return found


# ---------------------------------------------------------------- what the stacks were given, and wrote

def harvest(base: Path) -> None:
    """Secrets from every extproc config and account store under `base`, and every log file there."""
    for path in base.rglob("*"):
        if path.suffix == ".log":
            log_file(path)
        elif path.suffix in (".yaml", ".yml"):
            _harvest_config(path)
        elif path.suffix == ".json" and path.name.startswith("accounts"):
            _harvest_store(path)


def _harvest_config(path: Path) -> None:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return
    if isinstance(doc, dict) and ("providers" in doc or "listen" in doc):  # an extproc config, not Envoy's
        _walk(doc, "config")


def _walk(node: Any, kind: str, secret_field: bool = False) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _walk(v, f"config {k}" if k in _CONFIG_SECRETS else kind, secret_field=k in _CONFIG_SECRETS)
    elif isinstance(node, list):
        for item in node:
            _walk(item, kind, secret_field)
    elif secret_field:
        secret(kind, node)


def _harvest_store(path: Path) -> None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return
    accounts = doc.get("accounts") if isinstance(doc, dict) else None
    for account in accounts if isinstance(accounts, list) else []:
        if isinstance(account, dict):
            for name in _STORE_SECRETS:
                secret(f"stored {name}", account.get(name))


# ---------------------------------------------------------------- what test clients sent and read

class _Lines(logging.Handler):
    """Every record the gateway's code logs in the test process (unit tests run it in-process), as a line."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a record that cannot be formatted is not this observer's business
            REGISTRY.log_records.append(self.format(record))


def _keep(sink: bytearray, chunk: bytes) -> None:
    if len(sink) < _BODY_LIMIT:
        sink += chunk[: _BODY_LIMIT - len(sink)]


def _sent(request: Any) -> None:
    """The credentials a test client sends are secrets too: a gateway must not echo or log them."""
    for name in _CREDENTIAL_HEADERS:
        value = request.headers.get(name, "")
        secret("credential a test client sent", value.split(" ", 1)[1] if " " in value else value)
    secret("credential a test client sent", request.url.params.get("key"))


def _read(response: Any, streamed: bool) -> bytearray | None:
    """A sink for the response's body when it is an error or an event stream (where error events go)."""
    if response.status_code < 400 and not response.headers.get("content-type", "").startswith("text/event-stream"):
        return None
    sink = bytearray()
    REGISTRY.bodies.append((f"the body of {response.request.method} {response.request.url.path} "
                            f"(status {response.status_code})", sink))
    if not streamed:
        _keep(sink, response.content)
    return sink


def _observe(module: Any) -> None:
    """Wrap `send` of an httpx-style module's clients (httpx, and httpx2, which the SDKs run on): register what
    each request carries, and record error bodies and event streams as the caller reads them."""
    if getattr(module.Client.send, "observed", False):
        return

    class Recorded(module.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, sink: bytearray) -> None:
            self._inner, self._sink = inner, sink

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                _keep(self._sink, chunk)
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class AsyncRecorded(module.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, sink: bytearray) -> None:
            self._inner, self._sink = inner, sink

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._inner:
                _keep(self._sink, chunk)
                yield chunk

        async def aclose(self) -> None:
            await self._inner.aclose()

    sync_send, async_send = module.Client.send, module.AsyncClient.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        _sent(request)
        response = sync_send(self, request, **kwargs)
        sink = _read(response, kwargs.get("stream", False))
        if sink is not None and kwargs.get("stream", False) and isinstance(response.stream, module.SyncByteStream):
            response.stream = Recorded(response.stream, sink)
        return response

    async def asend(self: Any, request: Any, **kwargs: Any) -> Any:
        _sent(request)
        response = await async_send(self, request, **kwargs)
        sink = _read(response, kwargs.get("stream", False))
        if sink is not None and kwargs.get("stream", False) and isinstance(response.stream, module.AsyncByteStream):
            response.stream = AsyncRecorded(response.stream, sink)
        return response

    send.observed = asend.observed = True  # type: ignore[attr-defined]
    module.Client.send = send
    module.AsyncClient.send = asend


def install() -> None:
    """Observe every httpx and httpx2 client of the test process, and its logging; once per session."""
    if _observed:
        return
    _observed.append(True)
    _observe(httpx)
    try:
        import httpx2
    except ImportError:  # an SDK release without it
        pass
    else:
        _observe(httpx2)
    # On the package's logger, not the root: logging.basicConfig and extproc.logs.configure (root handlers) are
    # left as they would be without the scan.
    logging.getLogger("extproc").addHandler(_Lines())


_observed: list[bool] = []
