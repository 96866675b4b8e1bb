"""Development certificates: ``pynatsd certs DIR [--client NAME ...] [--days 90] [--quiet-if-present]``.

Makes a throw-away CA, a server certificate for localhost / 127.0.0.1 / ::1 and client
certificates (CN=<name> plus an email SAN <name>@localhost), then prints a ``tls {}`` block that
uses them. Keys are ECDSA P-256 and written with mode 0600. The issuing helpers (``new_key``,
``issue``, ``write_cert``, ``write_key``) are also used by the test certificate factory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")


def new_key(kind: str = "ec") -> PrivateKey:
    """A fresh private key: "ec" (P-256, fast) or "rsa" (2048 bits)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


_SHORT_NAMES = {
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
    "STREET": NameOID.STREET_ADDRESS, "POSTALCODE": NameOID.POSTAL_CODE, "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT, "UID": NameOID.USER_ID, "EMAIL": NameOID.EMAIL_ADDRESS,
}


def name(cn: str | None = None, **attrs: str) -> x509.Name:
    """A subject in DER order: the keyword attributes (C, ST, L, O, OU, DC, ...) then CN."""
    parts = [x509.NameAttribute(_SHORT_NAMES[key], value) for key, value in attrs.items()]
    if cn is not None:
        parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


def issue(
    subject: x509.Name,
    key: PrivateKey,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    ca: bool = False,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 90,
) -> x509.Certificate:
    """Sign a certificate for ``key``; self-signed when ``issuer`` is None."""
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or now + dt.timedelta(days=days)
    signer_cert, signer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )
    else:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )
    builder = builder.add_extension(usage, critical=True)
    if signer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    ekus = []
    if server:
        ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans: list[x509.GeneralName] = []
    sans += [x509.RFC822Name(e) for e in emails]
    sans += [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def write_cert(path: str | os.PathLike[str], *certs: x509.Certificate) -> None:
    """Write one or more certificates (a chain) as PEM."""
    Path(path).write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def write_key(path: str | os.PathLike[str], key: PrivateKey, password: bytes | None = None) -> None:
    """Write a private key as PKCS#8 PEM with mode 0600 (encrypted when ``password`` is given)."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Loaded:
    cert: x509.Certificate
    key: PrivateKey


def _load_valid(cert_path: Path, key_path: Path, issuer: x509.Certificate | None) -> _Loaded | None:
    """The pair if both files parse, match, are currently valid and (if given) signed by issuer."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, pub) != key.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        return None
    now = dt.datetime.now(dt.UTC)
    if not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc - dt.timedelta(days=1)):
        return None
    if issuer is not None:
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return None
    return _Loaded(cert, key)


def tls_block(directory: Path, clients: Sequence[str]) -> str:
    """The config text printed after generating: server TLS and a verify_and_map example."""
    d = directory
    lines = [
        "# Server TLS (clients may verify the server against ca.pem):",
        "tls {",
        f'  cert_file: "{d / "server-cert.pem"}"',
        f'  key_file:  "{d / "server-key.pem"}"',
        f'  ca_file:   "{d / "ca.pem"}"',
        "  timeout: 2",
        "}",
    ]
    if clients:
        lines += [
            "",
            "# Mutual TLS, the client certificate names the user (verify_and_map):",
            "tls {",
            f'  cert_file: "{d / "server-cert.pem"}"',
            f'  key_file:  "{d / "server-key.pem"}"',
            f'  ca_file:   "{d / "ca.pem"}"',
            "  verify_and_map: true",
            "}",
            "authorization {",
            "  users = [",
        ]
        lines += [f'    {{ user: "{c}@localhost" }}' for c in clients]
        lines += ["  ]", "}"]
        first = clients[0]
        lines += [
            "",
            f"# e.g. nats --tlscert {d / (first + '-cert.pem')} --tlskey {d / (first + '-key.pem')} "
            f"--tlsca {d / 'ca.pem'} -s tls://localhost:4222 pub hello world",
        ]
    return "\n".join(lines)


def generate(directory: Path, clients: Sequence[str], days: int, keep_valid: bool) -> bool:
    """Write the CA, server and client files; with ``keep_valid`` reuse files that are still good.

    Returns True when anything was written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wrote = False
    ca = _load_valid(directory / "ca.pem", directory / "ca-key.pem", None) if keep_valid else None
    if ca is None:
        key = new_key()
        cert = issue(name("pynatsd development CA", O="pynatsd"), key, ca=True, days=days)
        write_cert(directory / "ca.pem", cert)
        write_key(directory / "ca-key.pem", key)
        ca = _Loaded(cert, key)
        wrote = new_ca = True
    else:
        new_ca = False
    pairs: list[tuple[str, Sequence[str], Sequence[str], Sequence[str], bool]] = [
        ("server", SERVER_NAMES, SERVER_IPS, (), True)
    ]
    pairs += [(c, (), (), (f"{c}@localhost",), False) for c in clients]
    for stem, dns, ips, emails, is_server in pairs:
        cert_path = directory / f"{stem}-cert.pem"
        key_path = directory / f"{stem}-key.pem"
        if keep_valid and not new_ca and _load_valid(cert_path, key_path, ca.cert) is not None:
            continue
        key = new_key()
        subject = name(stem if not is_server else "localhost", O="pynatsd")
        # Server certificates also carry clientAuth so they can serve routes (both directions).
        cert = issue(
            subject, key, issuer=(ca.cert, ca.key), dns=dns, ips=ips, emails=emails,
            server=is_server, client=True, days=days,
        )
        write_cert(cert_path, cert)
        write_key(key_path, key)
        wrote = True
    return wrote


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pynatsd certs``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="pynatsd certs",
        description="Make a development CA, a localhost server certificate and client certificates.",
    )
    parser.add_argument("dir", help="directory to write the PEM files into (created if missing)")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also make a client certificate CN=NAME (repeatable)")
    parser.add_argument("--days", type=int, default=90, help="validity in days (default 90)")
    parser.add_argument("--quiet-if-present", action="store_true",
                        help="keep files that are still valid and print nothing when all are")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.days < 2:
        print("pynatsd certs: --days must be at least 2", file=sys.stderr)
        return 2
    for c in args.client:
        if not c or "/" in c or c in ("server", "ca"):
            print(f"pynatsd certs: invalid client name {c!r}", file=sys.stderr)
            return 2
    directory = Path(args.dir)
    if not args.quiet_if_present and not args.force:
        stems = ["ca", "server", *args.client]
        existing = [
            p for s in stems for p in (directory / f"{s}-cert.pem", directory / f"{s}-key.pem")
            if p.exists()
        ]
        if (directory / "ca.pem").exists():
            existing.append(directory / "ca.pem")
        if existing:
            print(f"pynatsd certs: {existing[0]} already exists; use --force to overwrite or "
                  "--quiet-if-present to keep valid files", file=sys.stderr)
            return 1
    try:
        wrote = generate(directory, args.client, args.days, keep_valid=args.quiet_if_present)
    except OSError as e:
        print(f"pynatsd certs: cannot write into {directory}: {e.strerror or e}", file=sys.stderr)
        return 1
    if wrote or not args.quiet_if_present:
        print(f"Wrote development certificates into {directory} (valid {args.days} days).")
        # absolute paths (helper T): the printed block works from any directory it is pasted into
        print(tls_block(directory.absolute(), args.client))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
