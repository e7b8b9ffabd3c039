"""One key per purpose from one shared secret: what seals a login in progress into an opaque handle.

A handle sealed here can be opened by any worker or replica that shares the secret, and read by nobody else
(Fernet: AES-CBC with an HMAC). The purpose goes into the key, so a handle sealed for one use opens for no other.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def fernet(secret: str, purpose: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))
