"""Names and small shapes every part of the bootstrap shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROCESSOR_CLUSTER = "extproc"
CONTROL_SERVICES = ("extproc.v1.Models", "extproc.v1.Auth")
DESCRIPTOR_SET = Path(__file__).resolve().parents[1] / "v1" / "extproc.pb"
T = "type.googleapis.com/envoy."
GRPC_LIMIT_SLACK = 4 * 1024 * 1024  # room for headers and framing around a body at the limit
# Content codings a client may compress its request body with (the SDKs can send gzip), and Envoy's library for each.
REQUEST_CODINGS: dict[str, dict[str, Any]] = {
    "gzip": {"@type": T + "extensions.compression.gzip.decompressor.v3.Gzip",
             "max_inflate_ratio": 1032},  # deflate's own ceiling: no valid body is cut; max_request_bytes bounds it
    "br": {"@type": T + "extensions.compression.brotli.decompressor.v3.Brotli"},
    "zstd": {"@type": T + "extensions.compression.zstd.decompressor.v3.Zstd"},
}
# What each ext_proc filter sends the processor unless an answer overrides it: the router-level filter the
# request and its body, the per-attempt and reauth filters (a cluster's upstream filters) the headers only.
ROUTER_MODE = {"request_header_mode": "SEND", "request_body_mode": "BUFFERED", "request_trailer_mode": "SKIP",
               "response_header_mode": "SKIP", "response_body_mode": "NONE", "response_trailer_mode": "SKIP"}
UPSTREAM_MODE = {**ROUTER_MODE, "request_body_mode": "NONE"}
RECEIVED_AT = "request.time"  # the attribute the router-level filter sends: when Envoy received the request
_LUA = Path(__file__).resolve().parent / "lua"


def provider_cluster_name(provider: str) -> str:
    return f"provider_{provider}"


def socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def lua(*names: str) -> str:
    """A Lua script made of these package files, in order (shared helpers first)."""
    return "".join((_LUA / f"{name}.lua").read_text() for name in names)
