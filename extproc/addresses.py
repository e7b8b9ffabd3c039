"""The URL a client on this machine dials for a listener: one bound to every address (0.0.0.0, ::) is not it."""

from __future__ import annotations

from extproc.core.settings import Address

_EVERY = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # bound to every address → the loopback one of its family


def listens_everywhere(address: Address) -> bool:
    return address.host in _EVERY


def local_url(address: Address) -> str:
    """`http://host:port` that reaches `address` from here (IPv6 hosts in brackets)."""
    host = _EVERY.get(address.host, address.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{address.port}"
