"""NKEY user authentication: public user keys, the per-connection nonce, and signature checks.

An nkey user is configured by its public key (``U`` + 55 base32 characters: a prefix byte, the
32-byte ed25519 public key and a CRC16, as nats-io's nkeys encodes it). The server sends each
client a random ``nonce`` in INFO; the client signs it with its private key and sends ``nkey``
and ``sig`` in CONNECT. The signature is accepted as base64 URL-safe without padding (what
nats-server expects) or standard base64 with padding (what nats-py sends), nothing else.

Decoding needs only the standard library, so the config loader can check keys cheaply; the
ed25519 verification uses ``cryptography`` (already a dependency), imported only once a
signature has to be checked (``preload`` does it early, when nkey users are configured).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

PREFIX_USER = 20 << 3  # nkeys' prefix byte for user keys: base32 starts with 'U'
NONCE_BYTES = 11  # as nats-server: 11 random bytes, 15 base64url characters
_KEY_LEN = 32

# public key string -> the cryptography Ed25519PublicKey built from it
_verifiers: dict[str, Any] = {}


def decode_user_key(key: str) -> bytes | None:
    """The raw ed25519 public key of a public user NKEY, or None when ``key`` is not one
    (wrong prefix, length, alphabet or checksum)."""
    if len(key) != 56 or not key.startswith("U"):
        return None
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 1 + _KEY_LEN + 2 or raw[0] != PREFIX_USER:
        return None
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if binascii.crc_hqx(body, 0) != crc:
        return None
    return body[1:]


def is_user_key(key: str) -> bool:
    return decode_user_key(key) is not None


def make_nonce() -> str:
    """A fresh nonce for one connection's INFO."""
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode()


def decode_sig(sig: str) -> bytes | None:
    """The CONNECT ``sig``: base64 URL-safe without padding, else standard base64 with padding
    (Go's decoders skip CR and LF)."""
    s = sig.replace("\r", "").replace("\n", "")
    if "=" not in s and "+" not in s and "/" not in s and len(s) % 4 != 1:
        try:
            return base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            pass
    if len(s) % 4 == 0:
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def preload() -> None:
    """Import the ed25519 implementation now (at start or reload) rather than on a CONNECT."""
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401


def verify(key: str, nonce: str, sig: bytes) -> bool:
    """True when ``sig`` is the ed25519 signature of ``nonce`` by the user key ``key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pub = _verifiers.get(key)
    if pub is None:
        raw = decode_user_key(key)
        if raw is None:
            return False
        pub = Ed25519PublicKey.from_public_bytes(raw)
        if len(_verifiers) >= 4096:
            _verifiers.clear()
        _verifiers[key] = pub
    try:
        pub.verify(sig, nonce.encode())
    except InvalidSignature:
        return False
    return True
