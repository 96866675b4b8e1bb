"""What a peer certificate says, the way nats-server reads it.

- ``cert_identities``: the literal user names verify_and_map tries, in nats-server's order.
- ``map_certificate``: the whole verify_and_map search (literal candidates plus the structured
  RFC 4514 DN comparison), returning the user and how it matched.
- ``go_subject``: Go's ``cert.Subject.ToRDNSequence().String()`` byte for byte (the string a
  user is named by), ``go_subject_full``: Go's ``cert.Subject.String()`` (shown in connz).
- ``spki_sha256`` / ``cert_sha256``: the pin value and the certificate fingerprint.
- ``tls_info``: the TLS facts of a connection for /connz.

The subject is read from the certificate's DER with a small parser of our own so that RDN and
attribute order are exactly the certificate's (what Go sees), not a library's normalisation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto

CertLike = x509.Certificate | crypto.X509 | bytes

OID_CN = "2.5.4.3"
OID_SERIALNUMBER = "2.5.4.5"
OID_C = "2.5.4.6"
OID_L = "2.5.4.7"
OID_ST = "2.5.4.8"
OID_STREET = "2.5.4.9"
OID_O = "2.5.4.10"
OID_OU = "2.5.4.11"
OID_POSTALCODE = "2.5.4.17"
OID_DC = "0.9.2342.19200300.100.1.25"

# Go crypto/x509/pkix's names (the subject string) ...
GO_TYPE_NAMES = {
    OID_C: "C", OID_O: "O", OID_OU: "OU", OID_CN: "CN", OID_SERIALNUMBER: "SERIALNUMBER",
    OID_L: "L", OID_ST: "ST", OID_STREET: "STREET", OID_POSTALCODE: "POSTALCODE",
}
# ... and nats-server's LDAP DN table, which also knows DC (the structured DN match).
LDAP_TYPE_NAMES = {**GO_TYPE_NAMES, OID_DC: "DC"}
# Go's Name.ToRDNSequence() order; String() prints it reversed.
_GO_RDN_ORDER = (OID_C, OID_ST, OID_L, OID_STREET, OID_POSTALCODE, OID_O, OID_OU)

# --- a minimal DER reader for Name -----------------------------------------------------------


class _NotString:
    """An attribute value whose ASN.1 type is not a string (Go keeps it, but not as text)."""

    def __init__(self, tag: int, raw: bytes) -> None:
        self.tag = tag
        self.raw = raw


Atv = tuple[str, "str | _NotString"]  # (dotted OID, value)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        count = n & 0x7F
        n = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + n
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, pos, end


def _oid(raw: bytes) -> str:
    parts: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    if not parts:
        return ""
    first = parts[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(p) for p in head + parts[1:])


def _string(tag: int, raw: bytes) -> str | _NotString:
    if tag in (0x0C, 0x13, 0x16, 0x12):  # UTF8String, PrintableString, IA5String, NumericString
        return raw.decode("utf-8", "surrogateescape")
    if tag == 0x14:  # T61String: Go takes the bytes as they are
        return raw.decode("latin-1")
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be", "surrogatepass")
    if tag == 0x1C:  # UniversalString
        return raw.decode("utf-32-be", "surrogatepass")
    return _NotString(tag, raw)


def parse_name(der: bytes) -> list[list[Atv]]:
    """A DER Name as RDNs in certificate (DER) order, each a list of (oid, value) in DER order."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30:
        raise ValueError("Name is not a SEQUENCE")
    rdns: list[list[Atv]] = []
    pos = start
    while pos < end:
        tag, s_start, s_end = _tlv(der, pos)
        if tag != 0x31:
            raise ValueError("RDN is not a SET")
        rdn: list[Atv] = []
        p = s_start
        while p < s_end:
            _, a_start, a_end = _tlv(der, p)
            o_tag, o_start, o_end = _tlv(der, a_start)
            if o_tag != 0x06:
                raise ValueError("attribute type is not an OID")
            v_tag, v_start, v_end = _tlv(der, o_end)
            rdn.append((_oid(der[o_start:o_end]), _string(v_tag, der[v_start:v_end])))
            p = a_end
        rdns.append(rdn)
        pos = s_end
    return rdns


# --- certificate access ----------------------------------------------------------------------


def _cert(cert: CertLike) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, crypto.X509):
        return cert.to_cryptography()
    return x509.load_der_x509_certificate(cert)


def raw_subject(cert: x509.Certificate) -> bytes:
    """The subject Name exactly as encoded in the certificate (not re-encoded)."""
    tbs = cert.tbs_certificate_bytes
    _, pos, _ = _tlv(tbs, 0)  # TBSCertificate SEQUENCE
    tag, _, end = _tlv(tbs, pos)
    if tag == 0xA0:  # [0] version
        pos = end
        tag, _, end = _tlv(tbs, pos)
    # serialNumber, signature, issuer, validity, then subject
    for _ in range(4):
        _, _, end = _tlv(tbs, pos)
        pos = end
    _, _, end = _tlv(tbs, pos)
    return tbs[pos:end]


def _subject_rdns(cert: x509.Certificate) -> list[list[Atv]]:
    return parse_name(raw_subject(cert))


def spki_sha256(cert: CertLike) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo: the ``pinned_certs`` value."""
    c = _cert(cert)
    der = c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def cert_sha256(cert: CertLike) -> str:
    """Lower-case hex SHA-256 of the whole DER certificate."""
    return hashlib.sha256(_cert(cert).public_bytes(serialization.Encoding.DER)).hexdigest()


# --- Go's subject strings --------------------------------------------------------------------


def _go_escape(value: str) -> str:
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == " " and (i == 0 or i == last)) or (ch == "#" and i == 0):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _go_rdn_sequence(rdns: list[list[Atv]]) -> list[list[tuple[str, str]]]:
    """Go's Name.FillFromRDNSequence followed by ToRDNSequence(): the standard attributes only,
    regrouped by type in Go's fixed order (one CN and one SERIALNUMBER, the last seen)."""
    multi: dict[str, list[str]] = {oid: [] for oid in _GO_RDN_ORDER}
    cn = serial = ""
    for rdn in rdns:
        for oid, value in rdn:
            if not isinstance(value, str):
                continue
            if oid == OID_CN:
                cn = value
            elif oid == OID_SERIALNUMBER:
                serial = value
            elif oid in multi:
                multi[oid].append(value)
    seq = [[(oid, v) for v in multi[oid]] for oid in _GO_RDN_ORDER if multi[oid]]
    if cn:
        seq.append([(OID_CN, cn)])
    if serial:
        seq.append([(OID_SERIALNUMBER, serial)])
    return seq


def _go_string(seq: list[list[tuple[str, str]]]) -> str:
    return ",".join(
        "+".join(f"{GO_TYPE_NAMES[oid]}={_go_escape(v)}" for oid, v in rdn) for rdn in reversed(seq)
    )


def go_subject(cert: CertLike) -> str:
    """Go's ``cert.Subject.ToRDNSequence().String()``: the subject string verify_and_map looks up.

    Only C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER appear, printed as
    SERIALNUMBER, CN, OU, O, POSTALCODE, STREET, L, ST, C whatever the certificate's order;
    repeated types join one RDN with '+'; e.g. ``CN=alice,OU=Eng,O=Company,ST=CA,C=US``.
    """
    return _go_string(_go_rdn_sequence(_subject_rdns(_cert(cert))))


def go_subject_full(cert: CertLike) -> str:
    """Go's ``cert.Subject.String()`` (nats-server's connz ``tls_peer_certs[].subject``):
    ``go_subject`` followed by the other attributes, last first, as ``<dotted oid>=<value>``
    (Go 1.26+ prints string values as text; other values as ``#<hex DER>``)."""
    rdns = _subject_rdns(_cert(cert))
    extra: list[str] = []
    for rdn in rdns:
        for oid, value in rdn:
            if oid in GO_TYPE_NAMES:
                continue
            if isinstance(value, str):
                extra.append(f"{oid}={_go_escape(value)}")
            else:
                der = bytes([value.tag]) + _der_len(len(value.raw)) + value.raw
                extra.append(f"{oid}=#{der.hex()}")
    base = _go_string(_go_rdn_sequence(rdns))
    parts = ([base] if base else []) + list(reversed(extra))
    return ",".join(parts)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(ln)]) + ln


# --- RFC 4514 DNs as nats-server's LDAP helper reads them -----------------------------------

Dn = list[list[tuple[str, bytes]]]  # RDNs, each a list of (type name, value bytes)


def cert_dn(cert: CertLike) -> Dn | None:
    """The subject as an RFC 4514 DN (most specific RDN first), or None when it holds an
    attribute type outside CN, SERIALNUMBER, C, L, ST, STREET, O, OU, POSTALCODE, DC or a
    non-string value (nats-server then skips the structured match)."""
    out: Dn = []
    for rdn in reversed(_subject_rdns(_cert(cert))):
        if not rdn:
            continue
        attrs: list[tuple[str, bytes]] = []
        for oid, value in reversed(rdn):
            name = LDAP_TYPE_NAMES.get(oid)
            if name is None or not isinstance(value, str):
                return None
            attrs.append((name, value.encode("utf-8", "surrogateescape")))
        out.append(attrs)
    return out


_SPECIAL = frozenset(b' "#+,;<=>\\')
_HEX = frozenset(b"0123456789abcdefABCDEF")


def parse_dn(text: str) -> Dn | None:
    """Parse a configured user name as an RFC 4514 DN the way nats-server's LDAP helper does
    (None where it reports an error, e.g. a ``#`` BER value). Unescaped spaces around types and
    values are dropped; ``\\XX`` hex escapes give raw bytes."""
    data = text.encode("utf-8", "surrogateescape")
    dn: Dn = []
    rdn: list[tuple[str, bytes]] = []
    buf = bytearray()
    atype: str = ""
    escaping = False
    trailing = 0

    def take() -> bytes:
        nonlocal trailing
        value = bytes(buf[: len(buf) - trailing])
        buf.clear()
        trailing = 0
        return value

    i = 0
    n = len(data)
    while i < n:
        ch = data[i]
        if escaping:
            trailing = 0
            escaping = False
            if ch in _SPECIAL:
                buf.append(ch)
            else:
                if i + 1 == n:
                    return None
                pair = data[i:i + 2]
                if not all(c in _HEX for c in pair):
                    return None
                buf.append(int(pair, 16))
                i += 1
        elif ch == 0x5C:  # backslash
            trailing = 0
            escaping = True
        elif ch == 0x3D:  # '='
            atype = take().decode("utf-8", "surrogateescape")
            if i + 1 < n and data[i + 1] == 0x23:  # '#': BER-encoded value, unsupported
                return None
        elif ch in (0x2C, 0x2B):  # ',' '+'
            if not atype:
                return None
            rdn.append((atype, take()))
            atype = ""
            if ch == 0x2C:
                dn.append(rdn)
                rdn = []
        elif ch == 0x20 and not buf:
            pass  # unescaped leading space
        else:
            trailing = trailing + 1 if ch == 0x20 else 0
            buf.append(ch)
        i += 1
    if buf:
        if not atype:
            return None
        rdn.append((atype, take()))
        dn.append(rdn)
    return dn


def _atv_eq(a: tuple[str, bytes], b: tuple[str, bytes]) -> bool:
    return a[0].casefold() == b[0].casefold() and a[1] == b[1]


def _rdn_eq(a: list[tuple[str, bytes]], b: list[tuple[str, bytes]]) -> bool:
    return (len(a) == len(b) and all(any(_atv_eq(x, y) for y in b) for x in a)
            and all(any(_atv_eq(y, x) for x in a) for y in b))


def dn_equal(a: Dn, b: Dn) -> bool:
    """Same RDNs in the same order (RFC 4517 distinguishedNameMatch)."""
    return len(a) == len(b) and all(_rdn_eq(x, y) for x, y in zip(a, b, strict=True))


def dn_rdns_match(a: Dn, b: Dn) -> bool:
    """Same number of RDNs and each RDN of ``a`` found in ``b`` (any order)."""
    return len(a) == len(b) and all(any(_rdn_eq(x, y) for y in b) for x in a)


# --- verify_and_map --------------------------------------------------------------------------


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], []
    emails = ext.get_values_for_type(x509.RFC822Name)
    dns = ext.get_values_for_type(x509.DNSName)
    uris = [_go_url(u) for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    return emails, dns, uris


def _go_url(uri: str) -> str:
    """Go's url.Parse(u).String() for the usual URI SAN: the scheme is lower-cased."""
    scheme, sep, rest = uri.partition(":")
    if sep and scheme and scheme[0].isalpha():
        return scheme.lower() + ":" + rest
    return uri


def _dc_suffix(rdns: list[list[Atv]]) -> str:
    return ",".join(f"DC={v}" for rdn in rdns for oid, v in rdn if oid == OID_DC and isinstance(v, str))


@dataclass(frozen=True)
class CertMatch:
    """The user a certificate mapped to, and which nats-server rule found it."""

    username: str
    how: str  # "email", "SAN", "URI", "DistinguishedNameMatch", "RDNSequence", "subject"

    @property
    def debug_line(self) -> str:
        """nats-server's debug line for this match."""
        label = {
            "email": "Using email found in cert for auth",
            "SAN": "Using SAN found in cert for auth",
            "URI": "Using URI found in cert for auth",
            "DistinguishedNameMatch": "Using DistinguishedNameMatch for auth",
            "RDNSequence": "Using RDNSequence for auth",
            "subject": "Using certificate subject for auth",
        }[self.how]
        return f'{label} ["{self.username}"]'


def _literal_candidates(cert: x509.Certificate) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(SAN candidates, subject candidates) as (how, name); empty when nats-server finds none."""
    emails, dns, uris = _sans(cert)
    rdns = _subject_rdns(cert)
    sans = [("email", e) for e in emails] + [("SAN", d) for d in dns] + [("URI", u) for u in uris]
    subject = go_subject(cert)
    tail: list[tuple[str, str]] = []
    dcs = _dc_suffix(rdns)
    if dcs:
        tail.append(("RDNSequence", f"{subject},{dcs}"))
    if subject:
        tail.append(("subject", subject))
    return sans, tail


def mapping_candidates(cert: CertLike) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The literal verify_and_map candidates as (how, name): (the SANs: email, DNS, URI, in that
    order; the subject strings: with the DCs appended when there are any, then plain). Routes
    and gateways try these (cluster/peerauth.py)."""
    return _literal_candidates(_cert(cert))


def cert_identities(cert: CertLike) -> list[str]:
    """User names verify_and_map tries literally, in nats-server's order: email SANs, DNS SANs,
    URI SANs, [the structured DN match sits here: see ``map_certificate``], Go subject string
    with the DCs appended (only when the subject has DC attributes), Go subject string."""
    c = _cert(cert)
    sans, tail = _literal_candidates(c)
    return [name for _, name in sans + tail]


def map_certificate(
    cert: CertLike,
    usernames: Iterable[str],
    allowed: Callable[[str], bool] | None = None,
    *,
    structured_dn: bool = True,
) -> CertMatch | None:
    """nats-server's verify_and_map search for ``cert`` among the configured ``usernames``.

    ``allowed(username)`` rejects a user that may not use this connection type (the search goes
    on, as in nats-server). ``structured_dn=False`` skips the RFC 4514 comparison (routes,
    gateways and leafnode users only use the literal candidates).
    """
    c = _cert(cert)
    names = list(dict.fromkeys(usernames))
    known = set(names)
    ok = allowed or (lambda _u: True)
    sans, tail = _literal_candidates(c)
    for how, name in sans:
        if name in known and ok(name):
            return CertMatch(name, how)
    if structured_dn:
        dn = cert_dn(c)
        if dn is not None:
            parsed: list[tuple[str, Dn]] = []
            for user in names:
                if not ok(user):
                    continue
                udn = parse_dn(user)
                if udn is None:
                    continue
                if dn_equal(udn, dn):
                    return CertMatch(user, "DistinguishedNameMatch")
                parsed.append((user, udn))
            for user, udn in parsed:
                if dn_rdns_match(udn, dn):
                    return CertMatch(user, "DistinguishedNameMatch")
    for how, name in tail:
        if name in known and ok(name):
            return CertMatch(name, how)
    return None


# --- connz -----------------------------------------------------------------------------------


# (helper S) DER -> peer_cert_info result: the same client certificate is usually presented by
# many connections, and working the entry out (the subject string above all) costs more than a
# TLS connection's other Python work. Bounded; cleared when full.
_PEER_INFO_CACHE: dict[bytes, dict[str, str]] = {}
_PEER_INFO_CACHE_MAX = 1024


def peer_cert_info(cert: CertLike) -> dict[str, str]:
    """One ``tls_peer_certs`` entry: subject (Go's Subject.String(); left out when empty, as
    nats-server's JSON does), spki_sha256, cert_sha256."""
    c = _cert(cert)
    der = c.public_bytes(serialization.Encoding.DER)
    cached = _PEER_INFO_CACHE.get(der)
    if cached is not None:
        return dict(cached)
    subject = go_subject_full(c)
    info = {"subject": subject} if subject else {}
    info["spki_sha256"] = spki_sha256(c)
    info["cert_sha256"] = hashlib.sha256(der).hexdigest()
    if len(_PEER_INFO_CACHE) >= _PEER_INFO_CACHE_MAX:
        _PEER_INFO_CACHE.clear()
    _PEER_INFO_CACHE[der] = info
    return dict(info)


def tls_info(transport: Any, *, peer_certs: bool = True) -> dict[str, Any]:
    """TLS facts of an established connection for /connz: version ("1.3"), cipher_suite (Go
    name), group (Go name, e.g. "X25519MLKEM768") and, unless ``peer_certs=False`` (client
    connections work them out on request: ClientConnection.tls_peer_certs), peer_certs (leaf
    first). ``transport`` is a pynatsd.tls.transport.TLSTransport."""
    info: dict[str, Any] = dict(transport.tls_summary())  # a copy: the summary is shared
    if peer_certs:
        info["peer_certs"] = [peer_cert_info(c) for c in transport.get_extra_info("peer_cert_chain") or ()]
    return info
