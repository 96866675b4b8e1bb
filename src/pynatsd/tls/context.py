"""TLS contexts built from a ``tls {}`` block: certificates, cipher suites, groups, versions,
client verification, pinning and the FIPS policy.

The engine is pyOpenSSL on the OpenSSL that the ``cryptography`` wheel bundles (4.x), driven
through memory BIOs by ``transport.py``; the stdlib ``ssl`` (OpenSSL 3.0 here) cannot set key
exchange groups or offer ML-KEM. Names in the configuration are nats-server's (Go
``crypto/tls``) names; this module maps them to OpenSSL's and back.

Behaviour matched to nats-server 2.15 (checked against the real binary): the default TLS 1.2
suites are Go's ten "secure" ECDHE suites, the default groups are
X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521 with a
post-quantum hybrid always preferred (even at the cost of a HelloRetryRequest) and, within the
hybrid and the classical tiers, a group the client already sent a key share for preferred.
Deliberate differences: the order of ``cipher_suites`` is the server's preference (Go uses its
own order); listing TLS 1.3 suites restricts TLS 1.3 (Go ignores them); the old CHACHA20 names
without ``_SHA256`` are accepted; ``min_version`` 1.0/1.1 is allowed with a loud warning
(nats-server refuses it).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _lib

from pynatsd.config.options import TLSOptions
from pynatsd.errors import ConfigError

log = logging.getLogger("pynatsd.tls")

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

# --- cipher suites --------------------------------------------------------------------------

# Go's "secure" TLS 1.2 suites, in Go's preference order (AES-GCM, ChaCha20, then CBC): the
# default set of nats-server 2.12+.
SECURE_TLS12: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
# Go's "insecure" suites: accepted only with allow_insecure_cipher_suites (as nats-server 2.12+).
# RC4 and 3DES are not in OpenSSL 4 at all; naming them is a start-up error.
INSECURE_TLS12: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
}
# nats-server 2.10/2.11 spellings, still accepted here.
ALIASES: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
# TLS 1.3 suites have the same name in Go, IANA and OpenSSL; Go's preference order.
TLS13: tuple[str, ...] = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
ALL_TLS12: dict[str, str] = {**SECURE_TLS12, **INSECURE_TLS12}
OPENSSL_TO_GO_CIPHER: dict[str, str] = {v: k for k, v in ALL_TLS12.items()} | {n: n for n in TLS13}

FIPS_TLS12 = frozenset({
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
})
FIPS_TLS13 = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"})

# --- groups (curve_preferences) -------------------------------------------------------------

CURVES: dict[str, str] = {  # Go name -> OpenSSL group name
    "X25519MLKEM768": "X25519MLKEM768",
    "SecP256r1MLKEM768": "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024": "SecP384r1MLKEM1024",
    "X25519": "X25519",
    "CurveP256": "P-256",
    "CurveP384": "P-384",
    "CurveP521": "P-521",
}
HYBRID_CURVES = frozenset({"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024"})
DEFAULT_CURVES: tuple[str, ...] = tuple(CURVES)  # nats-server 2.15's default order
FIPS_CURVES = frozenset(CURVES) - {"X25519"}
# What OpenSSL reports for a negotiated group -> Go's CurveID name (for connz and logs).
OPENSSL_TO_GO_GROUP: dict[str, str] = {
    "x25519": "X25519", "X25519": "X25519", "secp256r1": "CurveP256", "prime256v1": "CurveP256",
    "P-256": "CurveP256", "secp384r1": "CurveP384", "P-384": "CurveP384", "secp521r1": "CurveP521",
    "P-521": "CurveP521", "X25519MLKEM768": "X25519MLKEM768", "SecP256r1MLKEM768": "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024": "SecP384r1MLKEM1024",
}

VERSIONS: dict[str, int] = {
    "1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION, "1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION,
}
DEFAULT_MIN_VERSION = "1.2"

_OP_PRIORITIZE_CHACHA = 0x00200000  # OpenSSL >= 1.1.1; not exported by the cffi binding
_SSL_MODE_NO_AUTO_CHAIN = 0x00000008  # likewise
_PIN_RE = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class ServerTLS:
    """A ready server-side TLS configuration. Immutable: a reload builds a new one.

    ``pins`` is None when no pinning is configured. ``verify`` means a client certificate is
    required and verified; ``map_users`` means verify_and_map (the certificate names the user).
    """

    ssl_context: SSL.Context
    options: TLSOptions
    cert: x509.Certificate  # the served leaf certificate
    not_after: dt.datetime  # aware, UTC
    pins: frozenset[str] | None
    verify: bool
    map_users: bool
    timeout: float
    min_version: str
    cipher_suites: tuple[str, ...]  # Go names of the enabled TLS 1.2 suites, preference order
    tls13_suites: tuple[str, ...]
    curves: tuple[str, ...]  # Go names, preference order
    fips: bool
    warnings: tuple[str, ...] = field(default=())  # already logged; kept for -t / tests
    # Run after a completed handshake (and the pin check), before the connection is handed to
    # the client code: returns None to accept or the failure reason (e.g. OCSP peer checks).
    # The argument is the TLSTransport; the handshake timeout still applies while it runs.
    peer_check: Callable[[Any], Awaitable[str | None]] | None = None
    # A ``certs`` list: every certificate's context (``ssl_context`` is the first, which
    # chooses per handshake) and leaf (``cert`` is the first); the selector keeps them alive.
    contexts: tuple[SSL.Context, ...] = ()
    certs: tuple[x509.Certificate, ...] = ()
    selector: Any = None


@dataclass(frozen=True)
class ClientTLS:
    """A client-side TLS configuration (solicited routes, gateways, leaf remotes)."""

    ssl_context: SSL.Context
    options: TLSOptions
    verify: bool  # verify the server's chain and host name (False with ``insecure``)
    pins: frozenset[str] | None
    timeout: float
    cert: x509.Certificate | None
    warnings: tuple[str, ...] = field(default=())
    selector: Any = None  # a ``certs`` list: the per-handshake choice (keeps its contexts alive)


def _pem_kinds(data: bytes) -> list[str]:
    """The types of the PEM blocks in ``data`` ("CERTIFICATE", "CERTIFICATE REQUEST", ...), once each."""
    kinds = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)
    return list(dict.fromkeys(k.decode() for k in kinds))


class _Builder:
    """Collects errors with the block's position and warnings while building one context."""

    def __init__(self, opts: TLSOptions, where: str) -> None:
        self.opts = opts
        self.where = where
        self.warnings: list[str] = []

    def error(self, message: str) -> ConfigError:
        src = self.opts.source
        return ConfigError(f"{self.where}: {message}", src.file or None, src.line or None)

    def warn(self, message: str) -> None:
        text = f"{self.where}: {message}"
        self.warnings.append(text)
        log.warning(text)

    # -- files --

    def read(self, key: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            raise self.error(f'{key} "{path}" does not exist; fix the path') from None
        except IsADirectoryError:
            raise self.error(f'{key} "{path}" is a directory; name the PEM file') from None
        except PermissionError:
            raise self.error(f'{key} "{path}" is not readable by this process; fix its permissions') from None
        except OSError as e:
            raise self.error(f'{key} "{path}" cannot be read: {e.strerror or e}') from None

    def certificates(self, key: str, path: str) -> list[x509.Certificate]:
        data = self.read(key, path)
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            kinds = _pem_kinds(data)
            if not kinds:
                hint = "it holds no PEM certificate"
            elif "CERTIFICATE" not in kinds:  # e.g. a CSR or a key given where a certificate goes
                hint = "it holds no certificate, only " + ", ".join(kinds)
            else:
                hint = f"it is not valid PEM ({e})"
            raise self.error(f'{key} "{path}": {hint}; give a PEM certificate file') from None
        return certs

    def private_key(self, path: str) -> _PrivateKey:
        data = self.read("key_file", path)
        password: bytes | None = None
        if self.opts.key_password_file:
            raw = self.read("key_password_file", self.opts.key_password_file)
            password = raw.rstrip(b"\r\n")
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError as e:
            if password is None:
                raise self.error(
                    f'key_file "{path}" is encrypted; set key_password_file to a file holding its passphrase'
                ) from None
            raise self.error(f'key_file "{path}" is not encrypted; remove key_password_file ({e})') from None
        except ValueError as e:
            if password is not None and "decrypt" in str(e).lower():
                raise self.error(
                    f'cannot decrypt key_file "{path}" with the passphrase in key_password_file '
                    f'"{self.opts.key_password_file}"; check the passphrase'
                ) from None
            kinds = _pem_kinds(data)
            if not kinds:
                hint = "it holds no PEM private key"
            elif not any(k.endswith("PRIVATE KEY") for k in kinds):  # e.g. the certificate named twice
                hint = "it holds no private key, only " + ", ".join(kinds)
            else:
                hint = f"it is not a valid key ({e})"
            raise self.error(f'key_file "{path}": {hint}; give the PEM private key') from None
        except Exception as e:  # unsupported algorithms raise UnsupportedAlgorithm
            raise self.error(f'key_file "{path}": unsupported private key ({e})') from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                          | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            raise self.error(f'key_file "{path}": this key type cannot serve TLS; use an EC or RSA key')
        return key

    # -- algorithms --

    def tls12_suites(self, fips: bool) -> tuple[list[str], list[str]]:
        """(Go names of TLS 1.2 suites, Go names of TLS 1.3 suites), preference order."""
        names = self.opts.cipher_suites
        if not names:
            t12, t13 = list(SECURE_TLS12), list(TLS13)
        else:
            t12, t13, insecure = [], [], []
            for raw in names:
                n = ALIASES.get(raw, raw)
                if n != raw:  # accepted, but a configuration shared with nats-server 2.12+ fails there
                    self.warn(f"cipher suite {raw} is the nats-server 2.10/2.11 name of {n}; "
                              "nats-server 2.12+ refuses it: use the new name")
                if n in TLS13:
                    target = t13
                elif n in SECURE_TLS12:
                    target = t12
                elif n in INSECURE_TLS12:
                    target = t12
                    insecure.append(raw)
                else:
                    raise self.error(
                        f"unrecognized cipher {raw}; use Go names such as "
                        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (see `pynatsd --help_tls`)"
                    )
                if n not in target:
                    target.append(n)
            if insecure and not self.opts.allow_insecure_cipher_suites:
                raise self.error(
                    "insecure cipher suites configured without 'allow_insecure_cipher_suites' option set: "
                    + ", ".join(insecure)
                )
            if not t13:
                t13 = list(TLS13)  # as Go: listing only TLS 1.2 suites leaves TLS 1.3 alone
        if fips:
            dropped = [n for n in t12 if n not in FIPS_TLS12] + [n for n in t13 if n not in FIPS_TLS13]
            t12 = [n for n in t12 if n in FIPS_TLS12]
            t13 = [n for n in t13 if n in FIPS_TLS13]
            if names and dropped:
                self.warn("FIPS policy: ignoring cipher suites that are not FIPS-approved: " + ", ".join(dropped))
            if not t12 and not t13:
                raise self.error("no FIPS-approved cipher suite left in cipher_suites; "
                                 "list an AES-GCM suite such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
        return t12, t13

    def curves(self, fips: bool) -> list[str]:
        names = self.opts.curve_preferences
        if not names:
            out = list(DEFAULT_CURVES)
        else:
            out = []
            for n in names:
                if n not in CURVES:
                    raise self.error(
                        f"unrecognized curve preference {n}; known: " + ", ".join(CURVES)
                    )
                if n not in out:
                    out.append(n)
        if fips:
            dropped = [n for n in out if n not in FIPS_CURVES]
            out = [n for n in out if n in FIPS_CURVES]
            if names and dropped:
                self.warn("FIPS policy: ignoring curves that are not FIPS-approved: " + ", ".join(dropped))
            if not out:
                raise self.error("no FIPS-approved curve left in curve_preferences; "
                                 "add X25519MLKEM768 or CurveP256")
        return out

    def min_version(self, fips: bool) -> str:
        v = self.opts.min_version or DEFAULT_MIN_VERSION
        if v not in VERSIONS:
            raise self.error(f"unknown version: {v}; use \"1.2\" or \"1.3\"")
        if VERSIONS[v] < SSL.TLS1_2_VERSION:
            if fips:
                raise self.error(f"TLS {v} is not allowed by the FIPS policy; use min_version \"1.2\" or \"1.3\"")
            self.warn(f"min_version {v} enables TLS {v}, which is obsolete and insecure (nats-server refuses it); "
                      "use \"1.2\" or higher")
        return v

    def pins(self) -> frozenset[str] | None:
        pins = self.opts.pinned_certs
        if not pins:
            return None
        out = set()
        for p in pins:
            low = p.lower()
            if not _PIN_RE.match(low):
                raise self.error(f"'pinned_certs' key {p} does not look like hex-encoded sha256 of DER encoded "
                                 "SubjectPublicKeyInfo")
            out.add(low)
        return frozenset(out)


def _group_list(curves: Sequence[str]) -> bytes:
    """OpenSSL group list: the post-quantum hybrids as one tier, the classical curves as a second.

    Tiers (OpenSSL 3.5+ "/" syntax) give Go's choice: a hybrid is always preferred, and within a
    tier a group the client sent a key share for wins (no HelloRetryRequest).
    """
    tiers = [[CURVES[c] for c in curves if c in HYBRID_CURVES], [CURVES[c] for c in curves if c not in HYBRID_CURVES]]
    return " / ".join(":".join(t) for t in tiers if t).encode()


_Algorithms = tuple[str, list[str], list[str], list[str]]  # min version, TLS 1.2 / 1.3 suites, curves


def _apply_algorithms(ctx: SSL.Context, b: _Builder, fips: bool, chosen: _Algorithms | None = None) -> _Algorithms:
    """Set versions, suites and groups on ``ctx``; ``chosen``: what an earlier call returned
    (further contexts of a ``certs`` list: same settings, warnings not repeated)."""
    if chosen is not None:
        minv, t12, t13, curves = chosen
    else:
        minv = b.min_version(fips)
        t12, t13 = b.tls12_suites(fips)
        curves = b.curves(fips)
    low_version = VERSIONS[minv] < SSL.TLS1_2_VERSION
    effective_min = VERSIONS[minv]
    if t12:
        spec = ":".join(ALL_TLS12[n] for n in t12)
        if low_version:
            spec += ":@SECLEVEL=0"  # OpenSSL refuses TLS 1.0/1.1 (SHA-1 signatures) above level 0
        try:
            ctx.set_cipher_list(spec.encode())
        except SSL.Error:
            raise b.error("none of the cipher suites is available in this OpenSSL: " + ", ".join(t12)) from None
        # OpenSSL skips names it does not know when at least one matches: find them by probing.
        probe = SSL.Context(SSL.TLS_METHOD)
        probe.set_cipher_list(spec.encode())
        have = set(SSL.Connection(probe, None).get_cipher_list())
        missing = [n for n in t12 if ALL_TLS12[n] not in have]
        if missing:
            raise b.error("cipher suites not available in this OpenSSL (RC4 and 3DES were removed): "
                          + ", ".join(missing))
    elif effective_min < SSL.TLS1_3_VERSION:
        # Only TLS 1.3 suites named: TLS 1.2 has nothing to negotiate, as with nats-server.
        effective_min = SSL.TLS1_3_VERSION
    ctx.set_tls13_ciphersuites(":".join(t13).encode())
    ctx.set_min_proto_version(effective_min)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    if _lib.SSL_CTX_set1_curves_list(ctx._context, _group_list(curves)) != 1:  # alias of set1_groups_list
        raise b.error("this OpenSSL rejected the group list " + ", ".join(curves))
    return minv, t12, t13, curves


def _check_dates(b: _Builder, cert: x509.Certificate, path: str) -> None:
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        b.warn(f'the certificate in cert_file "{path}" EXPIRED on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; '
               "clients will refuse it (starting anyway, as nats-server does): renew it")
    elif cert.not_valid_before_utc > now:
        b.warn(f'the certificate in cert_file "{path}" is not valid before '
               f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC; clients will refuse it until then")


def _same_key(cert: x509.Certificate, key: _PrivateKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _load_identity(ctx: SSL.Context, b: _Builder, cert_file: str, key_file: str) -> x509.Certificate:
    chain = b.certificates("cert_file", cert_file)
    pkey = b.private_key(key_file)
    leaf = chain[0]
    ctx.use_certificate(leaf)
    for extra in chain[1:]:
        ctx.add_extra_chain_cert(extra)
    try:
        ctx.use_privatekey(pkey)
        ctx.check_privatekey()
    except SSL.Error:
        fix = "use the key the certificate was issued for"
        if any(_same_key(c, pkey) for c in chain[1:]):  # e.g. `cat ca.pem server.pem`
            fix = "the key is for a later certificate in cert_file: put the server's certificate first"
        raise b.error(f'key_file "{key_file}" does not match the certificate in cert_file "{cert_file}"; '
                      + fix) from None
    _check_dates(b, leaf, cert_file)
    return leaf


def _load_ca(ctx: SSL.Context, b: _Builder, ca_file: str, *, send_names: bool) -> None:
    b.certificates("ca_file", ca_file)  # a clear error for a bad file before OpenSSL's
    try:
        ctx.load_verify_locations(ca_file)
    except SSL.Error as e:
        raise b.error(f'ca_file "{ca_file}": failed to parse root ca certificate ({e})') from None
    # Every certificate of ca_file is a trust anchor, as in Go: a ca_file holding only the
    # intermediate CA accepts the certificates it signed (OpenSSL would insist on the root).
    store = ctx.get_cert_store()
    assert store is not None  # a context always has one
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    if send_names:
        # Like Go, name the accepted CAs in the CertificateRequest so clients can pick a cert.
        try:
            ctx.load_client_ca(ca_file.encode())
        except SSL.Error as e:
            raise b.error(f'ca_file "{ca_file}": cannot read the CA names ({e})') from None


def build_server_context(opts: TLSOptions, *, fips: bool, where: str) -> ServerTLS:
    """Build the server side of a ``tls {}`` block; raises ConfigError (one line, with the fix).

    ``fips`` applies a FIPS *policy*: only FIPS-approved suites (AES-GCM), groups (NIST curves and
    the ML-KEM hybrids, not X25519 alone) and TLS 1.2+ are enabled. This is not a validated FIPS
    140-3 module; OpenSSL's FIPS provider is not loaded.

    A ``certs`` list gets one SSL context per certificate, all set up alike; the first one
    chooses per handshake which certificate to serve, as Go does (``certsel``).
    """
    b = _Builder(opts, where)
    if opts.certificates:
        pairs = list(opts.certificates)
    else:
        if not opts.cert_file:
            raise b.error("missing 'cert_file' in TLS configuration; a server needs a certificate and key")
        if not opts.key_file:
            raise b.error("missing 'key_file' in TLS configuration; name the certificate's private key")
        pairs = [(opts.cert_file, opts.key_file)]
    verify = opts.verify or (opts.verify_and_map and not opts.verify_from_flags)
    contexts: list[SSL.Context] = []
    leaves: list[x509.Certificate] = []
    chosen: _Algorithms | None = None
    for i, (cert_file, key_file) in enumerate(pairs):
        ctx, chosen = _server_context(b, fips, chosen)
        entry = b
        if opts.certificates:  # errors and warnings name the entry
            entry = _Builder(opts, f"{where}: certs entry {i + 1}/{len(pairs)}")
            entry.warnings = b.warnings
        leaves.append(_load_identity(ctx, entry, cert_file, key_file))
        if verify:
            if opts.ca_file:
                _load_ca(ctx, b, opts.ca_file, send_names=True)
            else:
                ctx.set_default_verify_paths()  # nats-server uses the system roots without ca_file
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        contexts.append(ctx)
    assert chosen is not None  # pairs is never empty
    minv, t12, t13, curves = chosen
    if not verify and opts.ca_file:
        b.certificates("ca_file", opts.ca_file)  # validated as nats-server does, unused here
    # Pinning needs the client's certificate, which is only requested with verify.
    pins = b.pins()
    if pins is not None and not verify:
        b.warn("pinned_certs without verify: clients are not asked for a certificate, so every "
               "connection fails the pin check; add verify: true")
    selector = None
    if len(contexts) > 1:
        from pynatsd.tls.certsel import Policy, Selector

        selector = Selector(contexts, leaves, Policy.of(t12, curves))
    leaf = leaves[0]
    return ServerTLS(
        ssl_context=contexts[0], options=opts, cert=leaf, not_after=leaf.not_valid_after_utc, pins=pins,
        verify=verify, map_users=opts.verify_and_map, timeout=opts.timeout, min_version=minv,
        cipher_suites=tuple(t12), tls13_suites=tuple(t13), curves=tuple(curves), fips=fips,
        warnings=tuple(b.warnings), contexts=tuple(contexts), certs=tuple(leaves), selector=selector,
    )


def _server_context(b: _Builder, fips: bool, chosen: _Algorithms | None) -> tuple[SSL.Context, _Algorithms]:
    """One server SSL context with every setting but the certificate and client verification
    (the same for each certificate of a ``certs`` list: a connection switched to another
    context keeps working alike)."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE | _OP_PRIORITIZE_CHACHA | SSL.OP_NO_COMPRESSION
                    | SSL.OP_NO_RENEGOTIATION)
    # pyOpenSSL turns partial writes on; with memory BIOs one SSL_write can take everything.
    ctx.clear_mode(_lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
    # Idle connections give their 2 x 16 KiB record buffers back (about half the memory of an
    # idle TLS connection) for a few percent more CPU on bulk transfers.
    ctx.set_mode(_lib.SSL_MODE_RELEASE_BUFFERS)
    # Send the chain exactly as cert_file gives it, as Go does. OpenSSL would otherwise build the
    # chain from the verify store on every handshake (a chain verification with a signature
    # check: ~0.75 M instructions, an eighth of a mutual-TLS server handshake).
    ctx.set_mode(_SSL_MODE_NO_AUTO_CHAIN)
    chosen = _apply_algorithms(ctx, b, fips, chosen)
    ctx.set_session_id(b"pynatsd")
    # No TLS session resumption: OpenSSL would send two stateless TLS 1.3 tickets per connection,
    # serialising and encrypting the session (with the client's certificate) twice, about 180 µs
    # of a 560 µs server handshake, and NATS clients do not resume sessions. With OP_NO_TICKET and
    # no session cache the tickets sent are bare ids that no cache can redeem (no memory kept).
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx, chosen


def build_client_context(opts: TLSOptions, *, fips: bool, where: str) -> ClientTLS:
    """Build the dialing side of a ``tls {}`` block (routes, gateways, leaf remotes).

    The peer's chain is verified against ``ca_file`` (or the system roots) unless ``insecure``;
    the host name is checked per connection by ``transport.start_tls_client``. A certificate is
    presented when cert_file/key_file are given. With a ``certs`` list, as Go: the first
    certificate whose chain was issued by a CA the peer's CertificateRequest names (the first
    when it names none), and none at all when no listed chain fits.
    """
    b = _Builder(opts, where)
    if bool(opts.cert_file) != bool(opts.key_file):
        missing = "key_file" if opts.cert_file else "cert_file"
        raise b.error(f"missing '{missing}' in TLS configuration; give both cert_file and key_file")
    pairs: list[tuple[str, str]] = list(opts.certificates) if not opts.cert_file else []
    if opts.cert_file and opts.key_file:
        pairs = [(opts.cert_file, opts.key_file)]
    contexts: list[SSL.Context] = []
    chains: list[list[x509.Certificate]] = []
    chosen: _Algorithms | None = None
    for i, (cert_file, key_file) in enumerate(pairs or [("", "")]):
        ctx, chosen = _client_context(b, opts, fips, chosen)
        if cert_file:
            entry = b
            if opts.certificates:  # errors and warnings name the entry
                entry = _Builder(opts, f"{where}: certs entry {i + 1}/{len(pairs)}")
                entry.warnings = b.warnings
            _load_identity(ctx, entry, cert_file, key_file)
            chains.append(entry.certificates("cert_file", cert_file))
        contexts.append(ctx)
    # (``insecure`` is announced by the route/gateway/leafnode managers, in nats-server's words)
    selector = None
    if len(contexts) > 1:
        bare, _ = _client_context(b, opts, fips, chosen)  # for "no acceptable certificate"
        selector = _ClientCertChoice(contexts, chains, bare)
    return ClientTLS(ssl_context=contexts[0], options=opts, verify=not opts.insecure, pins=b.pins(),
                     timeout=opts.timeout, cert=chains[0][0] if chains else None, warnings=tuple(b.warnings),
                     selector=selector)


def _client_context(b: _Builder, opts: TLSOptions, fips: bool,
                    chosen: _Algorithms | None) -> tuple[SSL.Context, _Algorithms]:
    """One dialing SSL context with every setting but the certificate."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    ctx.clear_mode(_lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
    ctx.set_mode(_lib.SSL_MODE_RELEASE_BUFFERS)
    ctx.set_mode(_SSL_MODE_NO_AUTO_CHAIN)  # as for servers: the chain as cert_file gives it
    chosen = _apply_algorithms(ctx, b, fips, chosen)
    if opts.insecure:
        ctx.set_verify(SSL.VERIFY_NONE)
    else:
        if opts.ca_file:
            _load_ca(ctx, b, opts.ca_file, send_names=False)
        else:
            ctx.set_default_verify_paths()
        ctx.set_verify(SSL.VERIFY_PEER)
    return ctx, chosen


class _ClientCertChoice:
    """Dialling with a ``certs`` list: when the peer asks for a certificate, switch to the
    context of the first listed chain it accepts (Go's getClientCertificate), or to one
    without a certificate. ClientTLS.selector keeps it (and its callback) alive."""

    def __init__(self, contexts: list[SSL.Context], chains: list[list[x509.Certificate]], bare: SSL.Context) -> None:
        from OpenSSL._util import ffi

        self.contexts = contexts
        self.issuers = [{c.issuer.public_bytes() for c in chain} for chain in chains]
        self.bare = bare
        self._cb = ffi.callback("int(*)(SSL *, void *)", self._pick)
        _lib.SSL_CTX_set_cert_cb(contexts[0]._context, self._cb, ffi.NULL)

    def _pick(self, ssl: Any, arg: Any) -> int:
        try:
            conn = SSL.Connection._reverse_mapping[ssl]
            names = {n.der() for n in conn.get_client_ca_list()}
            if not names:
                return 1  # the peer names no CA: the first certificate, already in place
            for i, issuers in enumerate(self.issuers):
                if issuers & names:
                    if i:
                        conn.set_context(self.contexts[i])
                    return 1
            conn.set_context(self.bare)
            return 1
        except Exception:  # noqa: BLE001 - never let an exception cross OpenSSL
            log.exception("choosing the client certificate failed")
            return 0


def go_cipher_name(openssl_name: str | None) -> str | None:
    """Go / IANA name of a negotiated suite as OpenSSL reports it."""
    if openssl_name is None:
        return None
    return OPENSSL_TO_GO_CIPHER.get(openssl_name, openssl_name)


def go_group_name(openssl_name: str | None) -> str | None:
    """Go CurveID name of a negotiated group as OpenSSL reports it."""
    if openssl_name is None:
        return None
    return OPENSSL_TO_GO_GROUP.get(openssl_name, openssl_name)


def help_names() -> tuple[Iterable[str], Iterable[str]]:
    """(cipher suite names, curve names) accepted in a tls block, for --help_tls."""
    return (list(ALL_TLS12) + list(TLS13) + list(ALIASES)), list(CURVES)
