"""A provider over real TLS: Envoy (and the processor's relay and discovery) check its certificate against
`ca_file`, send the provider's host as SNI, and refuse a certificate they cannot trust, which the client
hears of in its own error envelope."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.certs import Leaf, make_leaf
from tests.conftest import Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]
KEY = "k-tls-provider-key"


class TLSProvider:
    """A fake provider behind TLS: the fake's own handler (it records and answers as any fake does) on a
    server that terminates TLS with `leaf`, noting the server name each client asked for (SNI) and each
    handshake that failed."""

    def __init__(self, leaf: Leaf) -> None:
        self.fake = FakeProvider("tls")
        self.server_names: list[str | None] = []
        self.failed_handshakes: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(leaf.cert_file, leaf.key_file)
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)  # type: ignore[assignment,func-returns-value]
        provider = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = self.socket.accept()
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

            def finish_request(self, request: Any, client_address: Any) -> None:
                try:  # in the connection's own thread: a slow or failed handshake holds no other client
                    request.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    provider.failed_handshakes.append(type(exc).__name__ + ": " + str(exc))
                    return
                super().finish_request(request, client_address)

        handler: type[BaseHTTPRequestHandler] = self.fake.server.RequestHandlerClass  # type: ignore[assignment]
        self.server = Server(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.fake.close()


@pytest.fixture(scope="module")
def leaf(tmp_path_factory: pytest.TempPathFactory) -> Leaf:
    return make_leaf(tmp_path_factory.mktemp("tls"), ("localhost",))


@pytest.fixture
def provider(leaf: Leaf) -> Iterator[TLSProvider]:
    server = TLSProvider(leaf)
    yield server
    server.close()


def config(base_url: str, ca_file: Path, **extra: Any) -> dict[str, Any]:
    return {"discovery": {"enabled": "discovery" in extra}, "strategy": "none", "ca_file": str(ca_file),
            "providers": {"tlsprov": {k: v for k, v in {"base_url": base_url, "apis": {"openai": "/v1"},
                                                        "api_key": KEY, **extra}.items() if v is not None}},
            "models": [{"id": "tls-model", "provider": "tlsprov", "context_window": 100000,
                        "capabilities": ["tools", "streaming"]}]}


def test_a_trusted_certificate_serves_whole_and_streamed_answers_with_sni_and_discovery(
        provider: TLSProvider, leaf: Leaf, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    provider.fake.listing.ids = ["tls-model", "tls-discovered"]
    stack = make_stack(config(f"https://localhost:{provider.port}", leaf.ca_file,
                              discovery={"path": "/v1/models", "style": "openai"}))
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    whole = client.chat.completions.with_raw_response.create(model="tls-model", messages=CHAT)  # type: ignore[arg-type]
    assert whole.parse().choices[0].message.content == "hello from tls-model"
    assert whole.headers["x-extproc-provider"] == "tlsprov"
    with client.chat.completions.create(model="tls-model", messages=CHAT, stream=True) as events:  # type: ignore[arg-type]
        streamed = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
    assert streamed == "hello from tls-model"  # the processor's relay called the provider over TLS too
    sent = provider.fake.wait_for(2)
    assert [r.headers["authorization"] for r in sent] == [f"Bearer {KEY}"] * 2
    assert sent[1].json()["stream"] is True
    # Discovery's call for the model list went over TLS with the same trust.
    eventually(lambda: any(m["id"] == "tls-discovered" for m in httpx.get(stack.url + "/v1/models").json()["data"]),
               "discovery lists the TLS provider's models")
    assert provider.server_names and set(provider.server_names) == {"localhost"}
    assert provider.failed_handshakes == []


def test_a_certificate_signed_by_a_ca_the_gateway_does_not_trust_is_refused(
        provider: TLSProvider, tmp_path: Path, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    other = make_leaf(tmp_path / "other", ("localhost",), ca_name="some other CA")
    # Two keys taken in turn, one attempt a request: the first request's refusal cools one key, and the stream
    # after it goes out on the other (through the processor's relay, which must refuse the certificate too).
    stack = make_stack({**config(f"https://localhost:{provider.port}", other.ca_file, api_key=None,
                                 api_keys=[KEY, KEY + "-2"]), "failover": {"attempts": 1}})
    answer = httpx.post(stack.url + "/v1/chat/completions", json={"model": "tls-model", "messages": CHAT})
    assert answer.status_code in (502, 503), answer.text
    error = answer.json()["error"]  # the gateway's own reply, in OpenAI's envelope
    assert {"message", "type", "code"} <= set(error) and error["message"], answer.text
    eventually(lambda: bool(provider.failed_handshakes), "the provider sees a refused handshake")
    assert set(provider.server_names) == {"localhost"}  # it was asked for by name, and then not trusted
    refused = len(provider.failed_handshakes)
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError), client.chat.completions.create(
            model="tls-model", messages=CHAT, stream=True) as events:  # type: ignore[arg-type]
        list(events)
    eventually(lambda: len(provider.failed_handshakes) > refused, "the relay's handshake is refused too")
    assert "credential=tlsprov:key2" in stack.logs()  # the stream did go out, on the key not cooling
    assert set(provider.server_names) == {"localhost"}
    assert provider.fake.requests == []  # nothing, a key least of all, went over an untrusted connection


def test_a_certificate_for_another_name_is_refused_even_from_a_trusted_ca(
        provider: TLSProvider, leaf: Leaf, make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    """The certificate names `localhost`; a base_url of 127.0.0.1 must not accept it (the SAN is checked)."""
    stack = make_stack(config(f"https://127.0.0.1:{provider.port}", leaf.ca_file))
    answer = httpx.post(stack.url + "/v1/chat/completions", json={"model": "tls-model", "messages": CHAT})
    assert answer.status_code in (502, 503), answer.text
    assert {"message", "type", "code"} <= set(answer.json()["error"]), answer.text
    eventually(lambda: bool(provider.failed_handshakes), "the provider sees a refused handshake")
    assert provider.fake.requests == []
