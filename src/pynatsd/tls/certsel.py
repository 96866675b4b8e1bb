"""Choosing one of several server certificates per handshake (a ``certs`` list in a tls block).

nats-server hands its whole list to Go's crypto/tls, which serves the first certificate that
"supports" the ClientHello (``ClientHelloInfo.SupportsCertificate``): its DNS/IP SANs match
the SNI name (if one was sent; a ``*`` only as the whole left-most label; the CN is ignored),
the client offered a signature scheme usable with the key, and for TLS 1.2 the client can do
ECDHE on a curve the server allows (for an ECDSA key: the key's own curve) with a suite of the
key's kind (ECDHE-ECDSA or ECDHE-RSA); an RSA key may also fall back to a static-RSA suite when
one is configured. When none supports it, the first certificate is served.

OpenSSL cannot express that order (with several key types in one context it chooses by its
own signature-algorithm preference), so each certificate gets its own SSL context, all built
with the same settings, and the first one decides: a message callback keeps the raw
ClientHello (only when the keys differ in kind), and the servername callback (which OpenSSL
calls for every ClientHello, with or without SNI, after the extensions are parsed) applies the
rule above and switches the connection to the chosen certificate's context.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

log = logging.getLogger("pynatsd.tls")

# IANA ids of the TLS 1.2 suites nats-server can name (Go names).
SUITE_IDS: dict[str, int] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013,
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xC00A,
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xC014,
    "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C,
    "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009D,
    "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F,
    "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
    "TLS_RSA_WITH_AES_128_CBC_SHA256": 0x003C,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": 0xC023,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": 0xC027,
}
# Go CurveID of each group name
GROUP_IDS: dict[str, int] = {
    "X25519MLKEM768": 0x11EC, "SecP256r1MLKEM768": 0x11EB, "SecP384r1MLKEM1024": 0x11ED,
    "X25519": 0x001D, "CurveP256": 0x0017, "CurveP384": 0x0018, "CurveP521": 0x0019,
}
_TLS13_ONLY_GROUPS = frozenset({0x11EC, 0x11EB, 0x11ED})
_EC_CURVES = {"secp256r1": 0x0017, "secp384r1": 0x0018, "secp521r1": 0x0019}

# Signature schemes (RFC 8446 ids) Go's server uses by default (no SHA-1 since Go 1.25).
_ECDSA_BY_CURVE = {0x0017: 0x0403, 0x0018: 0x0503, 0x0019: 0x0603}
_ECDSA_TLS12 = (0x0403, 0x0503, 0x0603)
_RSA_PSS = (0x0804, 0x0805, 0x0806)
_RSA_PKCS1 = (0x0401, 0x0501, 0x0601)
_ED25519 = 0x0807

TLS12 = 0x0303
TLS13 = 0x0304
_HANDSHAKE = 22
_CLIENT_HELLO = 1


@dataclass(frozen=True)
class ClientHello:
    """What the certificate choice needs from a ClientHello."""

    version: int  # the highest version the client offers (0x0303 = TLS 1.2, 0x0304 = 1.3)
    suites: tuple[int, ...]
    sigalgs: tuple[int, ...]
    groups: tuple[int, ...]
    points: tuple[int, ...]


def parse_client_hello(msg: bytes) -> ClientHello | None:
    """Parse a ClientHello handshake message (with its 4-byte header); None if malformed."""
    try:
        if len(msg) < 4 or msg[0] != _CLIENT_HELLO:
            return None
        b = memoryview(msg)[4:]
        legacy = int.from_bytes(b[0:2], "big")
        i = 34
        i += 1 + b[i]  # session id
        n = int.from_bytes(b[i:i + 2], "big")
        suites = tuple(int.from_bytes(b[j:j + 2], "big") for j in range(i + 2, i + 2 + n, 2))
        i += 2 + n
        i += 1 + b[i]  # compression methods
        sigalgs: tuple[int, ...] = ()
        groups: tuple[int, ...] = ()
        points: tuple[int, ...] = ()
        versions: tuple[int, ...] = ()
        if i + 2 <= len(b):
            end = i + 2 + int.from_bytes(b[i:i + 2], "big")
            i += 2
            while i + 4 <= end:
                etype = int.from_bytes(b[i:i + 2], "big")
                elen = int.from_bytes(b[i + 2:i + 4], "big")
                d = b[i + 4:i + 4 + elen]
                i += 4 + elen
                if etype == 0x000D and len(d) >= 2:
                    sigalgs = _u16_list(d[2:2 + int.from_bytes(d[0:2], "big")])
                elif etype == 0x000A and len(d) >= 2:
                    groups = _u16_list(d[2:2 + int.from_bytes(d[0:2], "big")])
                elif etype == 0x000B and len(d) >= 1:
                    points = tuple(d[1:1 + d[0]])
                elif etype == 0x002B and len(d) >= 1:
                    versions = _u16_list(d[1:1 + d[0]])
        real = [v for v in versions if 0x0300 <= v <= TLS13]  # GREASE values are skipped
        return ClientHello(max(real) if real else legacy, suites, sigalgs, groups, points)
    except (IndexError, ValueError):
        return None


def _u16_list(d: memoryview) -> tuple[int, ...]:
    return tuple(int.from_bytes(d[j:j + 2], "big") for j in range(0, len(d) - 1, 2))


# -- host names (Go's x509.Certificate.VerifyHostname, without the CN) -------------------------

def _valid_host(host: str, *, pattern: bool) -> bool:
    host = host.removesuffix(".")
    if not host:
        return False
    labels = host.split(".")
    for i, label in enumerate(labels):
        if pattern and i == 0 and label == "*":
            continue
        if not label or not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return False
    return True


def _match_pattern(pattern: str, host: str) -> bool:
    pattern, host = pattern.removesuffix("."), host.removesuffix(".")
    if not pattern or not host:
        return False
    p, h = pattern.split("."), host.split(".")
    if len(p) != len(h):
        return False
    return all((i == 0 and part == "*") or part == h[i] for i, part in enumerate(p))


def names_match(dns: Sequence[str], ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address], name: str) -> bool:
    """Does a certificate with these SANs match ``name`` (an SNI value)?"""
    candidate = name[1:-1] if len(name) >= 3 and name[0] == "[" and name[-1] == "]" else name
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ip == other for other in ips)
    host = name.lower()
    valid = _valid_host(host, pattern=False)
    for pat in dns:
        pat = pat.lower()
        if valid and _valid_host(pat, pattern=True):
            if _match_pattern(pat, host):
                return True
        elif pat == host:
            return True
    return False


# -- the choice ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One listed certificate as the choice sees it."""

    dns: tuple[str, ...]
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    kind: str  # "rsa", "ecdsa", "ed25519" or "other"
    curve: int  # Go CurveID of an ECDSA key, else 0

    @classmethod
    def of(cls, cert: x509.Certificate) -> Candidate:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(ip for ip in san.get_values_for_type(x509.IPAddress)
                        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address))
        except x509.ExtensionNotFound:
            dns, ips = (), ()
        key = cert.public_key()
        curve = 0
        if isinstance(key, rsa.RSAPublicKey):
            kind = "rsa"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            kind = "ecdsa"
            curve = _EC_CURVES.get(key.curve.name, 0)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            kind = "ed25519"
        else:
            kind = "other"
        return cls(dns, ips, kind, curve)


@dataclass(frozen=True)
class Policy:
    """The server settings the choice depends on (the same for every listed certificate)."""

    suites: tuple[int, ...]  # configured TLS 1.2 suites (ids)
    groups: tuple[int, ...]  # configured groups (Go CurveIDs)

    @classmethod
    def of(cls, suites: Sequence[str], curves: Sequence[str]) -> Policy:
        return cls(tuple(SUITE_IDS[s] for s in suites if s in SUITE_IDS),
                   tuple(GROUP_IDS[c] for c in curves if c in GROUP_IDS))


_SUITE_NAMES = {v: k for k, v in SUITE_IDS.items()}


def _suite_flags(suite: int) -> tuple[bool, bool, bool]:
    """(ECDHE, ECDSA-signed, TLS 1.2 only) as Go flags the suite."""
    n = _SUITE_NAMES[suite]
    return (n.startswith("TLS_ECDHE_"), "_ECDSA_" in n,
            any(t in n for t in ("_GCM_", "CHACHA20", "_SHA256", "_SHA384")))


def _schemes(c: Candidate, version: int) -> tuple[int, ...]:
    if c.kind == "ecdsa":
        if version != TLS13:
            return _ECDSA_TLS12
        s = _ECDSA_BY_CURVE.get(c.curve)
        return (s,) if s else ()
    if c.kind == "rsa":
        return _RSA_PSS if version == TLS13 else _RSA_PSS + _RSA_PKCS1
    if c.kind == "ed25519":
        return (_ED25519,)
    return ()


def supports(c: Candidate, hello: ClientHello, version: int, sni: str | None, policy: Policy) -> bool:
    """Go's ClientHelloInfo.SupportsCertificate for one listed certificate."""
    if sni and not names_match(c.dns, c.ips, sni):
        return False

    def rsa_fallback() -> bool:  # static RSA key exchange (only with an insecure TLS_RSA_ suite)
        if version == TLS13 or c.kind != "rsa":
            return False
        return any(s in policy.suites and not _suite_flags(s)[0] and not (version < TLS12 and _suite_flags(s)[2])
                   for s in hello.suites)

    if hello.sigalgs and not set(_schemes(c, version)) & set(hello.sigalgs):
        return rsa_fallback()
    if version == TLS13:
        return True
    allowed = [g for g in policy.groups if g not in _TLS13_ONLY_GROUPS]
    ecdhe = any(g in allowed for g in hello.groups) and (not hello.points or 0 in hello.points)
    if not ecdhe:
        return rsa_fallback()
    if c.kind == "ecdsa":
        if not c.curve or c.curve not in hello.groups or c.curve not in allowed:
            return False
        ecdsa_suite = True
    elif c.kind == "ed25519":
        if version < TLS12 or not hello.sigalgs:
            return False
        ecdsa_suite = True
    elif c.kind == "rsa":
        ecdsa_suite = False
    else:
        return rsa_fallback()
    for s in hello.suites:
        if s not in policy.suites:
            continue
        is_ecdhe, ec_sign, tls12_only = _suite_flags(s)
        if is_ecdhe and ec_sign == ecdsa_suite and not (version < TLS12 and tls12_only):
            return True
    return rsa_fallback()


def choose(cands: Sequence[Candidate], hello: ClientHello | None, version: int, sni: str | None,
           policy: Policy) -> int:
    """Index of the certificate to serve: the first that supports the hello, else the first."""
    if hello is None:
        return 0
    for i, c in enumerate(cands):
        if supports(c, hello, version, sni, policy):
            return i
    return 0


# -- wiring into OpenSSL ---------------------------------------------------------------------------

_seen = threading.local()  # (SSL pointer, ClientHello bytes) of the last ClientHello on this thread


@_ffi.callback("void(*)(int, int, int, void *, size_t, SSL *, void *)")
def _on_message(write_p: int, version: int, content_type: int, buf: Any, size: int, ssl: Any, arg: Any) -> None:
    # Called for every record header too: return at once for anything but a received handshake
    # message. OpenSSL calls this when a whole message has arrived, just before processing it in
    # the same SSL_do_handshake call, so the servername callback that follows finds it here.
    if write_p or content_type != _HANDSHAKE or size < 4:
        return
    data = _ffi.buffer(buf, size)
    if data[0] == b"\x01":
        _seen.hello = (int(_ffi.cast("uintptr_t", ssl)), bytes(data))


class Chooser:
    """The choice for one ``certs`` list, without OpenSSL: ``index(sni, client_hello)``."""

    def __init__(self, certs: Sequence[x509.Certificate], policy: Policy) -> None:
        self.cands = tuple(Candidate.of(c) for c in certs)
        self.policy = policy
        # With keys of one kind (RSA, or ECDSA on one curve, or Ed25519) a client that can use
        # one can use them all, so the first name match is Go's choice (and a client that can
        # use none fails with any of them): the ClientHello is not needed.
        self.by_name_only = len({(c.kind, c.curve) for c in self.cands}) == 1

    def index(self, sni: str | None, client_hello: bytes | None) -> int:
        hello = None if self.by_name_only or client_hello is None else parse_client_hello(client_hello)
        if hello is None:
            return next((i for i, c in enumerate(self.cands) if sni and names_match(c.dns, c.ips, sni)), 0)
        return choose(self.cands, hello, min(hello.version, TLS13), sni, self.policy)


class Selector:
    """Installed on the first certificate's context; switches each connection to the context of
    the certificate Go would serve. Holds the contexts (and so keeps them alive)."""

    def __init__(self, contexts: Sequence[SSL.Context], certs: Sequence[x509.Certificate], policy: Policy) -> None:
        self.contexts = tuple(contexts)
        self.chooser = Chooser(certs, policy)
        first = self.contexts[0]
        # The message callback runs for every TLS record of every connection (about 1 µs each
        # in Python): it is only installed when the choice needs the ClientHello.
        if not self.chooser.by_name_only:
            _lib.SSL_CTX_set_msg_callback(first._context, _on_message)
        first.set_tlsext_servername_callback(self._pick)

    def _pick(self, conn: SSL.Connection) -> None:
        raw = conn.get_servername()
        sni = raw.decode("ascii", "replace") if raw else None
        hello = None
        if not self.chooser.by_name_only:
            seen = getattr(_seen, "hello", None)
            _seen.hello = None
            if seen is not None and seen[0] == int(_ffi.cast("uintptr_t", conn._ssl)):
                hello = seen[1]
        i = self.chooser.index(sni, hello)
        if i:
            conn.set_context(self.contexts[i])
