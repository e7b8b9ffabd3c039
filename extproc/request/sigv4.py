"""AWS Signature Version 4 on a request as it leaves for Bedrock: botocore's own signer, over the final method, path,
host and body. The keys reach here as the credential's secret, packed by the secret source (auth/aws.py); they are
never logged, and only the signature goes upstream."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from extproc.core.settings import AwsAuth

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

# What a signed request carries: the signature, its time, and a temporary credential's session token.
SIGNED_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token")


def pack_keys(access_key: str, secret_key: str, token: str | None) -> str:
    """AWS keys as one credential secret (the string a secret source hands the request path)."""
    return orjson.dumps([access_key, secret_key, token]).decode()


def _unpack(secret: str) -> ReadOnlyCredentials:
    from botocore.credentials import ReadOnlyCredentials

    access_key, secret_key, token = orjson.loads(secret)
    return ReadOnlyCredentials(access_key, secret_key, token)


def signed_headers(secret: str, auth: AwsAuth, authority: str, method: str, path: str,
                   body: bytes) -> dict[str, str]:
    """The headers that sign this request (SIGNED_HEADERS): the host and the SigV4 date are what is signed, so
    headers Envoy adds on the way (x-request-id, x-forwarded-*) cannot break the signature. botocore is imported
    here, not with the module: a gateway without Bedrock never loads it (loaded first by `find_credentials`, in
    its thread, before any request is signed)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=f"https://{authority}{path}", data=body, headers={"host": authority})
    SigV4Auth(_unpack(secret), auth.service, auth.region).add_auth(request)
    return {name: request.headers[name] for name in SIGNED_HEADERS if request.headers.get(name)}
